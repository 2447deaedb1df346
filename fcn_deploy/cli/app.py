"""The typer app every command module registers on: one-line errors (exit 1 for bad input, 2
for usage errors, 130 for Ctrl-C), a traceback and a request to report it for anything that is
not a user error, --verbose and --version, and the console the commands print on."""
from __future__ import annotations

import errno
import functools
import os
import sys
import traceback

import typer
from rich.console import Console
from typer.core import TyperGroup

from fcn_deploy import __version__
from fcn_deploy.errors import FcnDeployError, OptionError, message_line
from fcn_deploy.runtime.registry import backends

# click's exception base, whether typer uses click or its own copy of it (typer >= 0.24).
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _extras() -> dict[str, str]:
    """Optional packages -> the extra that installs them (pyproject.toml): each backend's, from
    the backend table (the first backend needing a package says: onnxruntime comes with the
    install), and those of export, plots, Ray and the Triton client."""
    found: dict[str, str | None] = {}
    for b in backends().values():
        for module in b.requires:
            found.setdefault(module, b.extra)
    found.update(onnx="torch", onnxconverter_common="torch", matplotlib="plot", ray="ray",
                 tritonclient="triton", onnxslim="simplify", tensorrt_rtx="trt")
    return {m: extra for m, extra in found.items() if extra}


EXTRAS = _extras()
# OSErrors that are the machine's state, not a bug: said in one line like a user error.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT,
                      errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EMFILE,
                      errno.ENAMETOOLONG, errno.EADDRINUSE}


class _OneLineErrors(TyperGroup):
    """Usage errors (a bad option value, a missing argument) as one ``error:`` line, exit 2,
    instead of click's usage box, like every other error of the CLI."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _ClickException as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `fcn-deploy`: the help text
                e.show()
                sys.exit(e.exit_code)
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            print(f"error: {' '.join(e.format_message().split())}{hint}", file=sys.stderr)
            sys.exit(e.exit_code)
        except typer.Abort:
            print("error: aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,  # plain help: rich.markdown alone costs ~0.1 s
                  cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]},
                  help="FCN semantic segmentation from PyTorch to ONNX/TensorRT, with benchmarks.")
console = Console()
if not console.is_terminal:  # logs and pipes: room for the wide tables instead of 80 columns
    console = Console(width=160)
state = {"verbose": False}


def _print_version(value: bool) -> None:
    if value:
        print(f"fcn-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors, "
                                      "and the engine profile each input shape runs in."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")):
    state["verbose"] = verbose


def command(fn):
    """Register ``fn`` as a subcommand: the project's errors print one line and exit 1 (2 for
    usage errors), a missing extra names it, Ctrl-C exits 130 (128 + SIGINT); anything else is
    a bug: its traceback, and a line asking to report it."""
    name = fn.__name__.replace("_", "-")

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ModuleNotFoundError as e:
            extra = EXTRAS.get((e.name or "").partition(".")[0])
            if extra is None or state["verbose"]:
                raise
            _exit(1, f"{name} needs {e.name}, which is not installed here: "
                     f"pip install 'fcn-deploy[{extra}]'")
        except BrokenPipeError:  # `fcn-deploy info --json | head`: the reader has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
            raise typer.Exit(1) from None
        except FcnDeployError as e:
            if state["verbose"]:
                raise
            # a bad option value is a usage error: 2, as click gives for the ones it checks
            _exit(2 if isinstance(e, OptionError) else 1, str(e))
        except MemoryError as e:  # where no inference guard caught it (decoding, writing)
            if state["verbose"]:
                raise
            _exit(1, f"out of memory ({message_line(e)}): free memory, or give predict, eval "
                     "and segment-dataset a --max-memory or --tile")
        except OSError as e:
            if state["verbose"]:
                raise
            if e.errno not in ENVIRONMENT_ERRNOS:
                _report_bug(name)
            _exit(1, str(e))
        except KeyboardInterrupt:
            _exit(130, "interrupted")
        except Exception:  # noqa: BLE001  (not a user error: a bug to report)
            _report_bug(name)
    return app.command()(run)


def _exit(code: int, message: str):
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code) from None


def _report_bug(name: str):
    traceback.print_exc()
    _exit(1, f"{name} failed on an error fcn-deploy does not expect (a bug): please report it "
             f"with the traceback above and the command (fcn-deploy {__version__}, "
             f"Python {sys.version.split()[0]})")


def say(line: str) -> None:
    """Print one log line unwrapped (a summary line stays one line in a narrow log)."""
    console.print(line, soft_wrap=True)


def fail_inputs(failed: list[str], inputs: int) -> None:
    """List the inputs that failed mid-run (``failed: ...``), then exit 1."""
    for line in failed:
        say(f"failed: {line}")
    if failed:
        others = "; the others were written" if inputs > len(failed) else ""
        raise FcnDeployError(f"{len(failed)} of {inputs} inputs failed (listed above){others}")


def main() -> None:
    """Console-script entry point."""
    app()
