"""A predict job: input list -> output file, resumable, and shardable across `torchrun` processes.

Each process (rank) scores a disjoint shard `todo[rank::world]` and appends every finished batch to its own
part file `<out>.part-<rank>.csv` (flushed per batch, so a killed job loses at most one batch per rank).
Rank 0 then merges the parts, in input order and each image once, into the one output file, written
atomically; the parts are removed. `resume=True` reads whatever parts (and a finished output) exist and
scores only the images not yet in them, whatever the number of processes was before.

Without torchrun this is the same code with one rank (every collective of `perceptions.runtime` is then the
identity).
"""
from __future__ import annotations

import glob
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd

from perceptions import runtime
from perceptions.errors import PerceptionsError
from perceptions.files import atomic_write
from perceptions.predict.inputs import ImageSources
from perceptions.predict.model import PerceptionModel, load_model
from perceptions.predict.pipeline import iter_batches
from perceptions.predict.writers import (check_output, output_format, prediction_columns, read_predictions,
                                         side_path, write_table)

PART_DTYPES = {"path": str, "location_id": str, "city": str, "level": str, "panorama": str}
TEXT_FILL = {"location_id": "", "city": "", "panorama": ""}
# Longer than training's: the ranks wait for each other only at the end, and their shards can take hours
# longer on one node than on another.
GROUP_TIMEOUT_H = 6.0


def predict_to_file(inputs, out, model=None, batch_size: int = 64, device: str = "auto",
                    num_workers: int | None = None, overwrite: bool = False, resume: bool = False,
                    precision: str = "auto", progress: bool | None = None, sources=None) -> dict:
    """Score every image found in `inputs` and write `out` (.csv, .parquet or .geojson) plus, when any file
    could not be read, `<out>.skipped.csv` (path, reason). Returns a summary dict (on every rank).

    model: a package folder, None for the shipped `model/`, or an already loaded PerceptionModel.
    sources: what turns `inputs` into image paths (`discover(inputs)`, on rank 0) and completes the finished
    rows (`annotate(rows) -> (rows, notes dict)`, on rank 0 before writing); default `ImageSources` (files,
    folders, lists; locations from Place Pulse names). `perceptions.places.PlaceSources` adds metadata tables,
    EXIF GPS, carried columns and coordinate checks; `perceptions predict` uses it. A `views` attribute
    (`perceptions.places.panoramas.PanoramaViews`) cuts some files into several views (`pipeline.iter_batches`):
    several rows per file, told apart by its `row_key`; skipped views are listed with their `key` column.
    """
    started = time.perf_counter()
    out = Path(out)
    owns_group = runtime.init_distributed(str(device), timeout_h=GROUP_TIMEOUT_H)
    rank, world = runtime.rank(), runtime.world_size()
    try:
        # Rank 0 plans; an error there is raised on every rank, so all fail alike.
        sources = sources if sources is not None else ImageSources()
        plan = runtime.on_main(lambda: _plan(inputs, out, overwrite, resume, sources))
        if not isinstance(model, PerceptionModel):
            model = load_model(model, device=device)
        shard = plan["todo"][rank::world]
        part = _part_path(out, rank)
        skipped_part = side_path(out, f"part-{rank}.skipped")
        views = plan["views"]
        skipped_columns = ["path", "reason"] + ([views.key] if views is not None else [])
        scored = 0
        with _PartWriter(part) as rows_file, \
                open(skipped_part, "a", encoding="utf-8", newline="") as skipped_file:
            if skipped_file.tell() == 0:
                skipped_file.write(",".join(skipped_columns) + "\n")
            desc = "predict" if world == 1 else f"predict rank {rank}/{world}"
            for rows, failed in iter_batches(model, shard, batch_size, num_workers, progress if rank == 0 else False,
                                             precision, desc=desc, views=views):
                if failed:
                    buf = io.StringIO()
                    pd.DataFrame([(shard[f[0]], *f[1:]) for f in failed], columns=skipped_columns).to_csv(
                        buf, header=False, index=False)
                    skipped_file.write(buf.getvalue())
                    skipped_file.flush()
                if rows is not None:
                    rows_file.write(rows.drop(columns="_index"))
                    scored += rows["_index"].nunique()  # files (a panorama's views count once)
        # One count per rank; a collective, so also the barrier: every part is complete after it.
        scored_by_rank = runtime.gather_rows(np.array([scored], dtype=np.int64), world)
        summary = {"images": len(plan["paths"]), "already_done": len(plan["paths"]) - len(plan["todo"]),
                   "scored_now": int(scored_by_rank.sum()), "ranks": world}
        if rank == 0:
            summary.update(_merge(out, plan["paths"], model.studies, plan["keep_previous"], sources, views))
        summary["seconds"] = time.perf_counter() - started
        runtime.barrier()
        return summary
    finally:
        if owns_group:
            import torch.distributed

            torch.distributed.destroy_process_group()


# ------------------------------------------------------------------------------------------- planning

def _plan(inputs, out: Path, overwrite: bool, resume: bool, sources) -> dict:
    """Rank 0 only: what to score (all input paths, those still to do, whether to keep an earlier output)."""
    check_output(out, overwrite=overwrite, resume=resume)
    paths = sources.discover(inputs)
    parts = _part_files(out)
    if parts and not (resume or overwrite):
        raise PerceptionsError(f"a partial output of an interrupted run exists ({parts[0]}); use --resume "
                               "to complete it or --overwrite to start again")
    if not resume:
        for p in parts + [side_path(out, "skipped")]:
            Path(p).unlink(missing_ok=True)
    views = getattr(sources, "views", None)
    if views is not None:
        views.prepare(paths, overwrite=overwrite or resume)
    done = _done_paths(out) if resume else set()
    return {"paths": paths, "todo": [p for p in paths if p not in done], "keep_previous": resume, "views": views}


def _done_paths(out: Path) -> set[str]:
    done = set()
    for part in _part_files(out):
        done.update(_read_part(part)["path"])
    if out.exists():
        done.update(read_predictions(out)["path"].astype(str))
    return done


class _PartWriter:
    """This rank's rows, appended a batch at a time to its part file (one write per batch: a kill leaves at most
    a cut line). A part left by an earlier run with other columns (e.g. written without the panorama hook) is
    not appended to: the rows go to a new part file beside it, and the merge reads both."""

    def __init__(self, part: Path):
        self.part, self.file, self.header = Path(part), None, None

    def write(self, rows: pd.DataFrame) -> None:
        header = ",".join(map(str, rows.columns))  # column names here are plain identifiers
        if self.file is None:
            self._open(header)
        buf = io.StringIO()
        rows.to_csv(buf, header=self.header is None, index=False)
        self.file.write(buf.getvalue())
        self.file.flush()
        self.header = header

    def _open(self, header: str) -> None:
        path, k = self.part, 1
        while path.exists() and path.stat().st_size and _first_line(path) != header:
            path, k = self.part.with_name(f"{self.part.stem}-{k}{self.part.suffix}"), k + 1
        self.file = open(path, "a", encoding="utf-8", newline="")
        self.header = header if self.file.tell() else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def _part_path(out: Path, rank: int) -> Path:
    return side_path(out, f"part-{rank}")


def _part_files(out: Path) -> list[str]:
    pattern = glob.escape(str(side_path(out, "part-"))).removesuffix(".csv") + "*.csv"
    return sorted(p for p in glob.glob(pattern) if not p.endswith(".skipped.csv"))


def _read_part(part) -> pd.DataFrame:
    """Read a part file, first cutting a line left unfinished by a kill (so appending continues cleanly)."""
    text = Path(part).read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    if complete != text:
        with atomic_write(part) as f:
            f.write(complete)
    if not complete.strip():
        return pd.DataFrame({"path": pd.Series(dtype=str)})
    df = pd.read_csv(io.StringIO(complete), dtype=PART_DTYPES, keep_default_na=False, na_values=[""])
    return df.fillna({k: v for k, v in TEXT_FILL.items() if k in df.columns})


# -------------------------------------------------------------------------------------------- merging

def _merge(out: Path, paths: list[str], studies: list[str], keep_previous: bool, sources, views=None) -> dict:
    """Parts (+ a finished earlier output) -> the one output file in input order; parts removed."""
    columns = prediction_columns(studies) if views is None else views.columns(studies)
    key = ["path"] if views is None else list(views.row_key)
    frames = [_read_part(p) for p in _part_files(out)]
    if keep_previous and out.exists():  # resuming a finished run, e.g. after images were added
        previous = read_predictions(out)
        frames.insert(0, previous.fillna({k: v for k, v in TEXT_FILL.items() if k in previous.columns}))
    frames = [f for f in frames if len(f)]
    if views is not None:  # parts or an output written without views: whole images
        frames = [views.fill(f) for f in frames]
    for f in frames:
        missing = [c for c in columns if c not in f.columns]
        if missing:
            raise PerceptionsError(f"{out}: the partial output has no {', '.join(missing)} (written by another "
                                   "model?); use --overwrite to start again")
    order = {p: i for i, p in enumerate(paths)}
    rows = (pd.concat([f[columns] for f in frames], ignore_index=True) if frames
            else pd.DataFrame(columns=columns))
    rows = rows[rows["path"].isin(order)].drop_duplicates(key)
    rows = rows.iloc[rows["path"].map(order).argsort(kind="stable")].reset_index(drop=True)
    for study in studies:
        rows[f"{study}_decile"] = rows[f"{study}_decile"].astype("int64")

    skipped_parts = sorted(glob.glob(glob.escape(str(side_path(out, "part-"))).removesuffix(".csv")
                                     + "*.skipped.csv"))
    skipped = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in skipped_parts]
                        or [pd.DataFrame(columns=["path", "reason"])], ignore_index=True)
    view_key = [views.key] if views is not None and views.key in skipped.columns else []
    one_view = skipped[view_key[0]].fillna("") != "" if view_key else pd.Series(False, index=skipped.index)
    keep = skipped["path"].isin(order) & (~skipped["path"].isin(set(rows["path"])) | one_view)
    skipped = skipped[keep].drop_duplicates(["path"] + view_key)
    if view_key and not one_view[keep].any():
        skipped = skipped.drop(columns=view_key)
    skipped = skipped.iloc[skipped["path"].map(order).argsort(kind="stable")].reset_index(drop=True)

    if views is not None:
        level = rows["level"].astype(str)
        counts = {"panoramas": int((level == "panorama").sum()), "views": int((level == "view").sum())}
        rows = views.select(rows)
    rows, notes = sources.annotate(rows)
    write_table(rows, out)
    skipped_file = side_path(out, "skipped")
    if len(skipped):
        write_table(skipped, skipped_file)
    else:
        skipped_file.unlink(missing_ok=True)
    for p in _part_files(out) + skipped_parts:
        Path(p).unlink(missing_ok=True)
    with_coordinates = int(rows[["lat", "lon"]].notna().all(axis=1).sum()) if len(rows) else 0
    return {"out": str(out), "rows": len(rows), "skipped": len(skipped),
            "skipped_file": str(skipped_file) if len(skipped) else None, "with_coordinates": with_coordinates,
            "format": output_format(out), **notes, **(counts if views is not None else {})}
