"""Builds the aioc package."""

from setuptools import setup

setup()
