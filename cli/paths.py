"""Click types for output paths: a path that cannot be written is refused before the command starts
its work, with a message that names the option and the path (:mod:`pysrm.rundir`)."""
from __future__ import annotations

import click


class OutputDir(click.ParamType):
    """A folder the command writes into: new (made with its parents) or existing; not a file, nor below one."""

    name = "directory"

    def convert(self, value, param, ctx):
        from pysrm.rundir import OutputPathError, check_output_dir
        if value is None:
            return None
        try:
            check_output_dir(value, param.opts[0] if param is not None else "--out")
        except OutputPathError as e:
            self.fail(f"{value}: {e.reason}", param, ctx)
        return value


class OutputPrefix(click.ParamType):
    """A file prefix: the command writes PREFIX + each of ``suffixes``; checked like :class:`OutputDir`'s folder."""

    name = "prefix"

    def __init__(self, suffixes=(".md", ".json")):
        self.suffixes = tuple(suffixes)

    def convert(self, value, param, ctx):
        from pysrm.rundir import OutputPathError, check_output_file
        if value is None:
            return None
        try:
            for suffix in self.suffixes:
                check_output_file(value + suffix, param.opts[0] if param is not None else "--out")
        except OutputPathError as e:
            self.fail(f"{value}: {e.path} cannot be written: {e.reason}", param, ctx)
        return value
