"""``python -m pysrm``: the ``pysrm`` command (the same as the console script)."""
from pysrm_cli.main import main

main(prog_name="pysrm")
