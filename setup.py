"""Package discovery, which pyproject.toml alone cannot express here: every package under
resnet_zoo/ is found (a hand-kept list once shipped a wheel without resnet_zoo.cli and
resnet_zoo.features), plus weights/ installed as the data package resnet_zoo._weights."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["resnet_zoo", "resnet_zoo.*"]) + ["resnet_zoo._weights"])
