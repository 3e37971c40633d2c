"""A sweep's runs as Ray tasks (``kr sweep --backend ray``): each task executes the notebook in a temporary
folder on its worker and sends back the record, the executed notebook and the weights, which are written
here -- the cluster needs no shared file system. Ray is optional (``pip install 'kr-lib[ray]'``): it is
imported when :func:`run_ray` starts."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from ..atomic import atomic_open, write_text_atomic
from .ablation import failed_record
from .parameters import AblationParams
from .records import read_record, write_record
from .notebook_run import RunOutcome, error_message, execute_run
from .weights import weights_path


def _ray_task(params: dict, notebook_text: str) -> dict:
    """Body of a Ray task: run in a temporary folder and send back the record and the executed notebook
    (so the cluster needs no shared file system)."""
    with tempfile.TemporaryDirectory(prefix="kr-sweep-") as tmp:
        nb = Path(tmp) / "ablation.ipynb"
        nb.write_text(notebook_text)
        outcome = execute_run(params, Path(tmp) / "results", notebook=nb)
        rec = read_record(outcome.path)
        executed = outcome.path.with_suffix(".ipynb")
        failed = outcome.path.with_name(outcome.path.stem + ".failed.ipynb")
        nb_file = executed if executed.is_file() else failed if failed.is_file() else None
        weights = weights_path(outcome.path)
        return {"record": rec, "notebook": nb_file.read_text() if nb_file else None,
                "notebook_name": nb_file.name if nb_file else None, "wall_time_s": outcome.wall_time_s,
                "weights": weights.read_bytes() if weights.is_file() else None}


def run_ray(todo: Iterable[AblationParams], output_dir: Path, address: str | None, notebook) -> Iterator[RunOutcome]:
    """Send each run to Ray as a task; yield outcomes as they finish, after writing their files under
    ``output_dir`` (each run's ``output_dir``)."""
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'kr-lib[ray]' (or pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)(_ray_task)
        text = Path(notebook).read_text()
        # plain dicts travel to the workers (they check them again)
        pending = {task.remote(p.notebook_parameters(), text): p.replace(output_dir=str(output_dir)) for p in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            p = pending.pop(ready[0])
            try:
                out = ray.get(ready[0])
                record = out["record"]
                if out.get("weights") is not None:  # before the record, as in run_ablation
                    with atomic_open(weights_path(p.record_path()), "wb") as fh:
                        fh.write(out["weights"])
                path = write_record(record, output_dir)
                if out["notebook"] is not None:
                    write_text_atomic(out["notebook"], path.with_name(out["notebook_name"]))
                yield RunOutcome(p.run_id, record["status"], path, out["wall_time_s"], record.get("message", ""))
            except Exception as err:  # the task itself died (worker lost, ...): recorded as failed
                message = error_message(err)
                path = write_record(failed_record(p, message), output_dir)
                yield RunOutcome(p.run_id, "failed", path, 0.0, message)
    finally:
        if started_here:
            ray.shutdown()
