"""The `doctor` command: a thin Typer layer over the Python API.

Exit codes (the contract, not Typer's defaults): 0 success; 2 bad input or usage, with one
line on stderr and no traceback; 1 an unexpected internal error; 130 interrupted (Ctrl-C)
after everything finished so far was saved.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated
from typing import Optional

import typer

from doctor.errors import InputError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Examine, diagnose, treat and explain a neural network on a CSV.")
log = logging.getLogger("doctor")

RECIPE = "Recipe options"
SEARCH = "Search options"


class Task(str, Enum):
    classification = "classification"
    regression = "regression"


class Optim(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"


class Space(str, Enum):
    guided = "guided"
    full = "full"


Data = Annotated[Path, typer.Argument(help="the CSV file", show_default=False)]
Target = Annotated[Optional[str], typer.Option("--target", help="the column to predict [default: target/label/class/y, else the last column]", rich_help_panel=RECIPE)]
TaskOpt = Annotated[Optional[Task], typer.Option("--task", help="inferred from the target when omitted", rich_help_panel=RECIPE)]
ModelOpt = Annotated[Optional[str], typer.Option("--model", metavar="FILE.py:FUNC", help="your model factory FUNC(n_features, n_outputs) -> nn.Module (this runs your code) [default: the doctor's MLP]", rich_help_panel=RECIPE)]
OptimOpt = Annotated[Optim, typer.Option("--optimizer", help="torch optimizer with its defaults except lr", rich_help_panel=RECIPE)]
LrOpt = Annotated[float, typer.Option("--lr", help="learning rate", rich_help_panel=RECIPE)]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="epochs of your recipe [default: the doctor's choice]", rich_help_panel=RECIPE)]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="mini-batch size [default: the doctor's choice]", rich_help_panel=RECIPE)]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="output folder [default: doctor-out/<data file stem>]", rich_help_panel=RECIPE)]
SeedOpt = Annotated[int, typer.Option("--seed", help="seeds everything", rich_help_panel=RECIPE)]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps", rich_help_panel=RECIPE)]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="no progress output; errors still go to stderr")]


def _setup(quiet: bool) -> None:
    import optuna

    level = logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("doctor")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    warnings.filterwarnings("ignore", category=FutureWarning)


def _case(data, target, task, model, optimizer, lr, epochs, batch_size, seed, device):
    from doctor.api import make_case

    return make_case(model, data, target=target, task=task.value if task else None,
                     optimizer=optimizer.value, lr=lr, epochs=epochs, batch_size=batch_size,
                     seed=seed, device=device)


def _out(out: Path | None, data: Path) -> Path:
    return out if out is not None else Path("doctor-out") / data.stem


def _command() -> str:
    return "doctor " + " ".join(shlex.quote(mask_text(a)) for a in sys.argv[1:])


def mask_text(text: str) -> str:
    """Mask passwords in any URL inside a piece of text."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]*@", r"\1***@", text)


def _summary(report: dict, out: Path, quiet: bool) -> None:
    if quiet:
        return
    from rich.console import Console

    con = Console(stderr=True, highlight=False)
    syms = report["symptoms"]
    con.print(f"[bold]{len(syms)} symptom(s)[/bold]" if syms else "[bold green]No symptoms found[/bold green]")
    for s in syms:
        cause = f" (caused by {s['caused_by']})" if s.get("caused_by") else ""
        con.print(f"  • {s['id']} [{s['severity']:.2f}]{cause}: {s['summary']}", markup=False)
    if report.get("verdict"):
        con.print(report["verdict"], markup=False)
    con.print(f"Report: {out / 'report.html'}", markup=False)


@app.command()
def diagnose(data: Data, target: Target = None, task: TaskOpt = None, model: ModelOpt = None,
             optimizer: OptimOpt = Optim.adam, lr: LrOpt = 1e-3, epochs: EpochsOpt = None,
             batch_size: BatchOpt = None, out: OutOpt = None, seed: SeedOpt = 0,
             device: DeviceOpt = "auto", quiet: QuietOpt = False) -> None:
    """Profile the data and train your recipe once with probes; report the symptoms (no search)."""
    from doctor.pipeline import run_diagnose

    _setup(quiet)
    case = _case(data, target, task, model, optimizer, lr, epochs, batch_size, seed, device)
    out = _out(out, data)
    report = run_diagnose(case, out, command=_command())
    _summary(report, out, quiet)


@app.command()
def fit(data: Data, target: Target = None, task: TaskOpt = None, model: ModelOpt = None,
        optimizer: OptimOpt = Optim.adam, lr: LrOpt = 1e-3, epochs: EpochsOpt = None,
        batch_size: BatchOpt = None, out: OutOpt = None, seed: SeedOpt = 0,
        device: DeviceOpt = "auto",
        trials: Annotated[Optional[int], typer.Option("--trials", help="trials to run in this call [default: 20]", rich_help_panel=SEARCH)] = None,
        timeout: Annotated[Optional[float], typer.Option("--timeout", help="stop starting new trials after S seconds", rich_help_panel=SEARCH)] = None,
        storage: Annotated[Optional[str], typer.Option("--storage", help="any SQLAlchemy URL Optuna accepts [default: sqlite:///studies/<study>.db]", rich_help_panel=SEARCH)] = None,
        study: Annotated[Optional[str], typer.Option("--study", help="Optuna study name; name one to share it across workers and machines [default: the data file's stem]", rich_help_panel=SEARCH)] = None,
        resume: Annotated[bool, typer.Option("--resume", help="continue that study; its finished trials count towards --trials", rich_help_panel=SEARCH)] = False,
        robust_eps: Annotated[Optional[float], typer.Option("--robust-eps", help="also optimise robust accuracy under L-inf perturbations of this size (scaled features)", rich_help_panel=SEARCH)] = None,
        workers: Annotated[int, typer.Option("--workers", help="worker processes on this machine, all on the same study", rich_help_panel=SEARCH)] = 1,
        space: Annotated[Space, typer.Option("--space", help="guided: the diagnosis shapes the space; full: every remedy, nothing enqueued", rich_help_panel=SEARCH)] = Space.guided,
        quiet: QuietOpt = False) -> None:
    """Diagnose, search remedies with Optuna, retrain and re-diagnose the best, explain it."""
    from doctor.pipeline import run_fit
    from doctor.storage import check_study_name
    from doctor.storage import default_storage
    from doctor.storage import default_study_name
    from doctor.search import DEFAULT_TRIALS

    _setup(quiet)
    if trials is not None and trials < 0:
        raise InputError(f"--trials must be 0 or more, got {trials}")
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if timeout is not None and timeout <= 0:
        raise InputError(f"--timeout must be a positive number of seconds, got {timeout}")
    if robust_eps is not None and not robust_eps > 0:
        raise InputError(f"--robust-eps must be a positive number, got {robust_eps}")
    join = study is not None
    name = check_study_name(study) if study else default_study_name(data.stem)
    url = storage or default_storage(name)
    case = _case(data, target, task, model, optimizer, lr, epochs, batch_size, seed, device)
    out = _out(out, data)
    callbacks = [] if quiet else [_progress_callback(trials or DEFAULT_TRIALS)]
    report = run_fit(case, out, storage=url, study=name, trials=DEFAULT_TRIALS if trials is None else trials,
                     timeout=timeout, resume=resume, join=join, space=space.value, workers=workers,
                     robust_eps=robust_eps, command=_command(), callbacks=callbacks)
    _summary(report, out, quiet)
    if not quiet:
        from doctor.storage import mask

        log.info("Study: optuna-dashboard %s  (or: doctor dashboard --storage %s)",
                 mask(url), mask(url))


def _progress_callback(total: int):
    def callback(study, trial) -> None:
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "-"
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        reason = trial.user_attrs.get("reason", "")
        log.info("trial %d/%d %s value=%s best=%s %s", trial.number + 1, total,
                 trial.state.name.lower(), value, best, reason)
    return callback


@app.command()
def predict(bundle: Annotated[Path, typer.Argument(help="the --out folder of a finished fit")],
            data: Data,
            out: Annotated[Optional[Path], typer.Option("--out", help="where to write the predictions [default: BUNDLE/predictions.csv]")] = None,
            quiet: QuietOpt = False) -> None:
    """Predict rows of a CSV with the cured model a `fit` wrote."""
    from doctor.api import configure_torch
    from doctor.bundle import Bundle
    from doctor.data import read_frame

    _setup(quiet)
    configure_torch()
    b = Bundle.load(bundle)
    frame = read_frame(data)
    preds = b.predict_frame(frame)
    dest = out if out is not None else bundle / "predictions.csv"
    dest.parent.mkdir(parents=True, exist_ok=True)
    preds.to_csv(dest, index=False)
    if not quiet:
        log.info("Wrote %d predictions to %s", len(preds), dest)


def _storages(storage: str | None) -> list[str]:
    if storage:
        return [storage]
    files = sorted(Path("studies").glob("*.db"))
    return [f"sqlite:///{f.as_posix()}" for f in files]


@app.command()
def studies(storage: Annotated[Optional[str], typer.Option("--storage", help="storage URL [default: every studies/*.db]")] = None,
            quiet: QuietOpt = False) -> None:
    """List the studies in a storage with trial counts and best values."""
    import optuna

    from doctor.storage import mask
    from doctor.storage import open_storage

    _setup(quiet)
    urls = _storages(storage)
    if not urls:
        raise InputError("no studies found under ./studies; run `doctor fit` first or pass --storage URL")
    for url in urls:
        summaries = optuna.get_all_study_summaries(storage=open_storage(url))
        typer.echo(f"{mask(url)}")
        for s in summaries:
            best = "-" if s.best_trial is None else f"{s.best_trial.value:.4f} (trial {s.best_trial.number})"
            typer.echo(f"  {s.study_name}\ttrials={s.n_trials}\tbest={best}")


@app.command()
def dashboard(storage: Annotated[Optional[str], typer.Option("--storage", help="storage URL [default: the only studies/*.db]")] = None,
              host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
              port: Annotated[int, typer.Option("--port")] = 8080,
              quiet: QuietOpt = False) -> None:
    """Start optuna-dashboard on a storage (with the study's artifacts)."""
    import optuna
    import optuna_dashboard

    from doctor.pipeline import artifact_dir
    from doctor.storage import mask
    from doctor.storage import open_storage

    _setup(quiet)
    urls = _storages(storage)
    if len(urls) != 1:
        found = ", ".join(urls) or "none"
        raise InputError(f"pass --storage URL (studies found: {found})")
    url = urls[0]
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir(url, "")))
    log.info("optuna-dashboard on http://%s:%d for %s", host, port, mask(url))
    optuna_dashboard.run_server(open_storage(url), host=host, port=port, artifact_store=store)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app and maps outcomes to the contract's exit codes."""
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="doctor")
        code = rv if isinstance(rv, int) else 0
    except InputError as e:
        print(f"doctor: error: {mask_text(str(e))}", file=sys.stderr)
        code = 2
    except typer.TyperException as e:  # usage errors of the (vendored) click parser
        if type(e).__name__ == "NoArgsIsHelpError":
            app(args=["--help"], standalone_mode=False, prog_name="doctor")
        else:
            print(f"doctor: error: {mask_text(e.format_message())}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, typer.Abort):
        print("doctor: interrupted; finished trials are saved in the study's storage", file=sys.stderr)
        code = 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # an internal error: one line, the traceback only on request
        if os.environ.get("DOCTOR_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"doctor: internal error: {type(e).__name__}: {mask_text(first)} (set DOCTOR_DEBUG=1 "
              "for the traceback)", file=sys.stderr)
        code = 1
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
