"""Packages are discovered, not listed: every package under fcn_deploy/, exporters/ and
benchmarks/, the last two installed inside fcn_deploy (fcn_deploy.exporters,
fcn_deploy.benchmarks) so site-packages gets no generic top-level "benchmarks" package.
Everything else about the project is in pyproject.toml."""
from setuptools import find_packages, setup

# installed name -> folder in this repository
ROOTS = {"fcn_deploy": "fcn_deploy", "fcn_deploy.exporters": "exporters",
         "fcn_deploy.benchmarks": "benchmarks"}

setup(package_dir=ROOTS,
      packages=[f"{name}.{sub}" if sub else name
                for name, folder in ROOTS.items() for sub in ["", *find_packages(folder)]])
