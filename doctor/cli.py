"""The `doctor` command: a thin Typer layer over the Python API.

Exit codes (the contract, not Typer's defaults): 0 success; 2 bad input or usage, with one
line on stderr and no traceback; 1 an unexpected internal error; 130 interrupted (Ctrl-C)
after everything finished so far was saved.
"""
from __future__ import annotations

import logging
import os
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
    """Mask passwords in any URL inside a piece of text (one rule: `doctor.storage`)."""
    from doctor.storage import mask_text as _mask

    return _mask(text)


def _summary(report: dict, out: Path, quiet: bool) -> None:
    """The end of a run on stderr: symptoms, verdict, before/after metrics, where things are."""
    bar = getattr(_progress_callback, "active", None)
    if bar is not None:  # a trial progress bar still on screen (e.g. --timeout cut the trials)
        bar.stop()
        _progress_callback.active = None
    if quiet:
        return
    from rich.console import Console
    from rich.table import Table

    con = Console(stderr=True, highlight=False)
    syms = report["symptoms"]
    con.print(f"[bold]{len(syms)} symptom(s)[/bold]" if syms else "[bold green]No symptoms found[/bold green]")
    status = {c["id"]: c.get("status") for c in report.get("cure") or []}
    for s in syms:
        cause = f" (caused by {s['caused_by']})" if s.get("caused_by") else ""
        after = f" → {status[s['id']]}" if s["id"] in status else ""
        con.print(f"  • {s['id']} [{s['severity']:.2f}]{cause}{after}: {s['summary']}", markup=False)
    base = (report.get("baseline") or {}).get("metrics") or {}
    best = (report.get("best") or {}).get("metrics") or {}
    keys = [k for k in ("balanced_accuracy", "accuracy", "r2", "rmse", "log_loss")
            if isinstance(base.get(k), (int, float)) and (not best or isinstance(best.get(k), (int, float)))]
    if keys:
        held = (report.get("baseline") or {}).get("held_out", "held-out rows")
        table = Table(title=f"metrics on {held}", title_justify="left", box=None, pad_edge=False)
        table.add_column("metric")
        table.add_column("your recipe", justify="right")
        if best:
            table.add_column("cured", justify="right")
            table.add_column("change", justify="right")
        for k in keys:
            row = [k, f"{base[k]:.4f}"]
            if best:
                row += [f"{best[k]:.4f}", f"{best[k] - base[k]:+.4f}"]
            table.add_row(*row)
        con.print(table)
    if report.get("verdict"):
        con.print(report["verdict"], markup=False)
    con.print(f"Report: {out / 'report.html'}", markup=False)
    if (out / "bundle.json").exists():
        con.print(f"Model bundle: {out}  (predict with: doctor predict {out} DATA.csv)", markup=False)


@app.command()
def diagnose(data: Data, target: Target = None, task: TaskOpt = None, model: ModelOpt = None,
             optimizer: OptimOpt = Optim.adam, lr: LrOpt = 1e-3, epochs: EpochsOpt = None,
             batch_size: BatchOpt = None, out: OutOpt = None, seed: SeedOpt = 0,
             device: DeviceOpt = "auto", quiet: QuietOpt = False) -> None:
    """Profile the data and train your recipe once with probes; report the symptoms (no search)."""
    from doctor.pipeline import run_diagnose

    from doctor.data import check_output_folder

    _setup(quiet)
    case = _case(data, target, task, model, optimizer, lr, epochs, batch_size, seed, device)
    out = check_output_folder(_out(out, data), data)
    report = run_diagnose(case, out, command=_command(), progress=_epoch_progress(quiet))
    _stop_live()
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
    import math

    from doctor.data import check_output_folder
    from doctor.search import check_resume
    from doctor.storage import open_storage

    if trials is not None and trials < 0:
        raise InputError(f"--trials must be 0 or more, got {trials}")
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if workers > 256:
        raise InputError(f"--workers {workers} is more processes than one machine can use; pass "
                         "at most the number of CPU cores (or GPUs)")
    if timeout is not None and not (timeout > 0):
        raise InputError(f"--timeout must be a positive number of seconds, got {timeout}")
    if epochs is not None and epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if robust_eps is not None and not (robust_eps > 0 and math.isfinite(robust_eps)):
        raise InputError(f"--robust-eps must be a positive number, got {robust_eps}")
    join = study is not None
    name = check_study_name(study) if study else default_study_name(data.stem)
    if storage is not None:
        open_storage(storage)  # a bad URL or an unreachable server: say so before any work
    url = storage or default_storage(name)
    out = check_output_folder(_out(out, data), data)
    case = _case(data, target, task, model, optimizer, lr, epochs, batch_size, seed, device)
    if resume or join:
        check_resume(url, name, case.table, resume=resume, join=join)
    callbacks = [] if quiet else [_progress_callback(trials or DEFAULT_TRIALS)]
    report = run_fit(case, out, storage=url, study=name, trials=DEFAULT_TRIALS if trials is None else trials,
                     timeout=timeout, resume=resume, join=join, space=space.value, workers=workers,
                     robust_eps=robust_eps, command=_command(), callbacks=callbacks,
                     progress=_epoch_progress(quiet))
    _stop_live()
    _summary(report, out, quiet)
    if not quiet:
        from doctor.storage import mask

        log.info("Study: optuna-dashboard %s  (or: doctor dashboard --storage %s)",
                 mask(url), mask(url))


_LIVE: dict = {"bar": None}  # the one rich live display on screen (rich allows one at a time)


def _stop_live() -> None:
    if _LIVE["bar"] is not None:
        _LIVE["bar"].stop()
        _LIVE["bar"] = None


def _epoch_progress(quiet: bool):
    """On a terminal: a rich bar per training stage (your recipe, the best, the refit)."""
    from rich.console import Console

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return None
    from rich.progress import BarColumn
    from rich.progress import MofNCompleteColumn
    from rich.progress import Progress
    from rich.progress import TextColumn

    def stage(label: str, epochs: int):
        bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("epochs  val {task.fields[val]}"), console=console,
                       transient=True)
        task = bar.add_task(label, total=epochs, val="-")

        def on_epoch(epoch: int, record: dict) -> None:
            if _LIVE["bar"] is not bar:
                _stop_live()  # a stage that stopped early leaves its bar: close it
                bar.start()
                _LIVE["bar"] = bar
            bar.update(task, completed=epoch + 1, val=f"{record['val_score']:.3f}")
            if epoch + 1 >= epochs:
                _stop_live()
        return on_epoch
    return stage


def _progress_callback(total: int):
    """An Optuna callback showing the trials: a rich progress bar with the best value so far on
    a terminal, one log line per trial otherwise (CI logs, pipes)."""
    from rich.console import Console
    from rich.progress import BarColumn
    from rich.progress import MofNCompleteColumn
    from rich.progress import Progress
    from rich.progress import TextColumn
    from rich.progress import TimeElapsedColumn

    console = Console(stderr=True)
    state: dict = {"done": 0, "bar": None, "task": None}

    def callback(study, trial) -> None:
        state["done"] += 1
        try:
            best_trial = study.best_trial
            best = f"{best_trial.value:.4f} (trial {best_trial.number})"
        except ValueError:
            best = "-"
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        reason = trial.user_attrs.get("reason") or ""
        if not console.is_terminal:
            log.info("trial %d/%d %s value=%s best=%s %s", state["done"], total,
                     trial.state.name.lower(), value, best, reason)
            return
        if state["bar"] is None:
            _stop_live()
            bar = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("best {task.fields[best]}"), TimeElapsedColumn(),
                           TextColumn("[dim]{task.fields[last]}"), console=console)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task("trials", total=total, best=best, last="")
            _progress_callback.active = bar
        last = f"#{trial.number} {trial.state.name.lower()} {value}"
        state["bar"].update(state["task"], completed=min(state["done"], total), best=best,
                            last=last if not reason else f"{last}: {reason[:40]}")
        if state["done"] >= total:
            state["bar"].stop()
            _progress_callback.active = None

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
    """Console entry point: runs the app and maps outcomes to the contract's exit codes.

    0 success; 2 bad input or usage (one line naming the file, column, row or option; an error
    raised inside the user's --model code counts as input too); 130 Ctrl-C, after Optuna has
    recorded the running trial as failed and everything finished is stored; 1 anything else
    (the traceback only with DOCTOR_DEBUG=1). Passwords in URLs are masked in every message.
    """
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="doctor")
        code = rv if isinstance(rv, int) else 0
        if code == 130:  # typer turns a KeyboardInterrupt into Exit(130) and returns it
            raise KeyboardInterrupt
    except InputError as e:
        print(f"doctor: error: {_one_line(e)}", file=sys.stderr)
        code = 2
    except typer.TyperException as e:  # usage errors of the (vendored) click parser
        if type(e).__name__ == "NoArgsIsHelpError":
            app(args=["--help"], standalone_mode=False, prog_name="doctor")
        else:
            print(f"doctor: error: {_one_line(e.format_message())}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, typer.Abort):
        print("doctor: interrupted; finished trials are saved in the study's storage", file=sys.stderr)
        code = 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # an internal error: one line, the traceback only on request
        if os.environ.get("DOCTOR_DEBUG"):
            raise
        where = _user_code_frame(e)
        first = _one_line(str(e)) if str(e) else ""
        what = f"{type(e).__name__}: {first}" if first else type(e).__name__
        if where is not None:  # the user's --model raised (e.g. only in training mode)
            print(f"doctor: error: --model {where}: your code raised {what}; fix it (the doctor "
                  "builds it as FUNC(n_features, n_outputs) and trains it on float batches)",
                  file=sys.stderr)
            code = 2
        elif isinstance(e, OSError) and getattr(e, "filename", None):
            print(f"doctor: error: {_one_line(e.filename)}: {e.strerror or what}; check the "
                  "path, its permissions and the free disk space", file=sys.stderr)
            code = 2
        else:
            print(f"doctor: internal error: {what} (set DOCTOR_DEBUG=1 for the traceback)",
                  file=sys.stderr)
            code = 1
    if argv is None:
        sys.exit(code)
    return code


def _one_line(e: object) -> str:
    """An error as one masked line (the contract: one line on stderr)."""
    from doctor.storage import mask_text as mask_urls

    text = str(e).strip()
    parts = [l.strip() for l in text.splitlines() if l.strip()]
    return mask_urls(mask_text(" ".join(parts)[:2000]))


def _user_code_frame(e: BaseException) -> str | None:
    """'FILE.py line N' of the innermost frame in the user's --model file, if any."""
    tb = e.__traceback__
    found = None
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith("doctor_user_model_"):
            found = f"{tb.tb_frame.f_code.co_filename} line {tb.tb_lineno}"
        tb = tb.tb_next
    return found


if __name__ == "__main__":
    main()
