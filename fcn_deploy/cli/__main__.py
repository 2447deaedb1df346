"""python -m fcn_deploy.cli: the fcn-deploy command."""
from .app import main

main()
