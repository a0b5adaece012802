#!/usr/bin/env python3
"""Mutation testing over NAMED mutations: does the suite fail when a guarded behaviour breaks?

Each mutation is one exact source snippet, its replacement, and the tests that must catch
it. Each is applied alone to a temporary copy of the repository (the working tree is never
edited), only its tests are run there, and it is reported CAUGHT (the tests failed) or
SURVIVED (they passed). The exit status is non-zero when any mutation survives or cannot
be applied (its snippet no longer matches exactly once: update the list with the code).

    .venv/bin/python scripts/mutation_test.py -j 2       # all (two copies at a time)
    .venv/bin/python scripts/mutation_test.py --list
    .venv/bin/python scripts/mutation_test.py -k resume  # names containing "resume"
    .venv/bin/python scripts/mutation_test.py --ci -j 2  # the bounded set the suite runs

``--ci`` is the set whose tests take seconds, not minutes (tests/test_mutations_caught.py runs
it on every CI run and requires every one to be caught); the full list also covers the
mutations whose guarding tests start a worker, a standalone server or two DDP processes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


T_TRAIN = "tests/astropt/test_train.py"
T_JOBS = "tests/worker/test_training_jobs.py"
T_HTTP = "tests/service/test_inference_http.py"
T_PROBE = "tests/astropt/test_live_probe.py"

MUTATIONS: tuple[Mutation, ...] = (
    # -- issue #17's list --------------------------------------------------------------
    Mutation(
        "worker-trains-with-resume-false",
        "worker/tasks.py",
        "result = train(config, [callback], resume=True)",
        "result = train(config, [callback], resume=False)",
        (f"{T_JOBS}::test_cancel_mid_run_leaves_a_checkpoint_then_resume",),
        "every recovered, resumed or re-delivered job restarts from step 0",
    ),
    Mutation(
        "ddp-wrapper-removed",
        "astropt/training/loop.py",
        "        if rt.ddp:\n            net = DistributedDataParallel(",
        "        if False:\n            net = DistributedDataParallel(",
        (f"{T_TRAIN}::test_ddp_two_processes_on_gloo_train_one_model",),
        "no gradient all-reduce: the ranks drift apart",
    ),
    Mutation(
        "best-val-loss-reset-on-resume",
        "astropt/training/loop.py",
        'start, best = int(state["iter_num"]), state.get("best_val_loss")',
        'start, best = int(state["iter_num"]), None',
        (f"{T_TRAIN}::test_best_val_loss_and_best_checkpoint_survive_resume",),
        "a resumed run forgets its best validation loss",
    ),
    Mutation(
        "stream-does-not-skip-ahead-on-resume",
        "astropt/training/batches.py",
        "        while self._next_index < index:  # skip what an earlier run already consumed\n"
        "            self._raw_batch()\n            self._next_index += 1\n",
        "        self._next_index = max(self._next_index, index)\n",
        (
            "tests/astropt/test_streams.py::test_streamed_batches_train_resume_exactly_and_keep_object_ids"
            "[local-uncached]",
        ),
        "a resumed stream replays the batches the first attempt already trained on",
    ),
    Mutation(
        "stream-drops-object-id",
        "astropt/data/sources.py",
        "stream = stream.select_columns([c for c in wanted if c in columns])",
        'stream = stream.select_columns([c for c in wanted if c in columns and c != "object_id"])',
        (
            "tests/astropt/test_streams.py::test_a_streamed_split_keeps_object_ids_and_splits_by_them",
        ),
        "the streamed split falls back to row numbers: no ids, no leak-free split",
    ),
    Mutation(
        "http-declared-size-check-removed",
        "service/inference/routes.py",
        "if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:",
        "if False:",
        (f"{T_HTTP}::test_declared_oversized_upload_is_refused_before_its_body_is_sent",),
        "an oversized upload is read into memory before anything refuses it",
    ),
    Mutation(
        "http-streamed-size-check-removed",
        "service/inference/routes.py",
        "        if len(body) > limit + FORM_OVERHEAD:\n            raise InferenceError(413, too_big)",
        "        if False:\n            raise InferenceError(413, too_big)",
        (f"{T_HTTP}::test_chunked_upload_is_refused_while_it_is_read",),
        "a chunked upload without Content-Length is read whole, however large",
    ),
    Mutation(
        "catch-all-error-handler-removed",
        "service/inference/routes.py",
        "    except Exception as exc:  # the image could not be processed; never a bare 500\n",
        "    except ZeroDivisionError as exc:  # mutated: nothing else is caught\n",
        (f"{T_HTTP}::test_an_unexpected_failure_in_the_model_is_a_422_not_a_bare_500",),
        "an unexpected error inside the model becomes a bare 500",
    ),
    Mutation(
        "embedding-pools-the-wrong-positions",
        "astropt/pooling.py",
        'if pool == "mean":\n        return hidden.mean(dim=1)',
        'if pool == "mean":\n        return hidden[:, 1:].mean(dim=1)',
        (f"{T_HTTP}::test_embed_pooling_values",),
        "the embedding response is a plausible vector of the wrong numbers",
    ),
    # -- the project's own set ---------------------------------------------------------
    Mutation(
        "loop-ignores-its-checkpoint",
        "astropt/training/loop.py",
        "state, meta = self._restore(model, self.codec_info) if resume else (None, {})",
        "state, meta = (None, {})",
        (f"{T_TRAIN}::test_resume_reproduces_uninterrupted_losses",),
        "train() restarts from scratch in a run directory with a checkpoint",
    ),
    Mutation(
        "resume-skips-the-rng-state",
        "astropt/training/loop.py",
        '            set_rng_state(state["rng"], rt.device)\n',
        "",
        (f"{T_TRAIN}::test_resume_reproduces_uninterrupted_losses",),
        "dropout after a resume differs from the uninterrupted run",
    ),
    # The worker's own publish after a requeue is backed up by the sweep of unpublished jobs
    # (the requeue clears published_at), so the mutation that stops recovery is in the store.
    Mutation(
        "recovery-never-requeues",
        "state/store/recovery.py",
        '            phase="queued",\n            published_at=None,\n',
        '            phase="running",\n            published_at=None,\n',
        ("tests/service/test_standalone.py::test_serve_demo_runs_jobs_and_recovers_after_a_crash",),
        "a job whose worker died stays 'running' for ever",
    ),
    Mutation(
        "unpublished-jobs-never-swept",
        "worker/tasks.py",
        "    for job_id in stranded:\n",
        "    for job_id in ():\n",
        (
            "tests/service/test_faults.py::test_a_job_recorded_but_never_published_is_published_by_the_sweep",
        ),
        "a job the API recorded but never published (it died in between) stays queued for ever",
    ),
    Mutation(
        "token-cache-ignores-the-codec",
        "astropt/tokenise.py",
        'path = token_cache_dir() / f"{dataset.fingerprint}-{codec.info.fingerprint}.npy"',
        'path = token_cache_dir() / f"{dataset.fingerprint}.npy"',
        ("tests/astropt/test_token_cache.py",),
        "tokens of one codec are served for another",
    ),
    Mutation(
        "token-cache-ignores-the-split",
        "astropt/data/sources.py",
        "[identity, split, cfg.val_fraction, rank, world_size, list(cfg.bands)], default=str",
        "[identity, cfg.val_fraction, rank, world_size, list(cfg.bands)], default=str",
        ("tests/astropt/test_token_cache.py",),
        "train tokens are served for the validation split",
    ),
    Mutation(
        "codec-fingerprint-check-disabled",
        "astropt/codec/info.py",
        "def check_same_codec(expected: dict[str, Any] | CodecInfo, actual: CodecInfo, what: str) -> None:\n",
        "def check_same_codec(expected: dict[str, Any] | CodecInfo, actual: CodecInfo, what: str) -> None:\n"
        "    return\n",
        (f"{T_TRAIN}::test_resume_refuses_a_different_codec",),
        "a checkpoint trained on one codec's tokens is resumed with another codec",
    ),
    Mutation(
        "artifact-path-containment-removed",
        "service/jobs/artifacts.py",
        "found = candidate.is_relative_to(root) and run_file(candidate, root)",
        "found = run_file(candidate, root)",
        ("tests/service/test_api.py::test_artifacts_are_served_without_path_traversal",),
        "GET /jobs/{id}/files/../../secret serves files outside the run directory",
    ),
    Mutation(
        "artifact-hard-links-served",
        "service/jobs/artifacts.py",
        "stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and",
        "stat.S_ISREG(info.st_mode) and",
        ("tests/service/test_hardening.py::test_hard_links_in_a_run_directory_are_never_served",),
        "a hard link to /etc/passwd planted in a run directory is served",
    ),
    Mutation(
        "parser-size-limit-removed",
        "astropt/inference/uploads.py",
        "    if len(data) > limits.max_upload_bytes:\n",
        "    if False:\n",
        ("tests/astropt/test_uploads.py::test_size_limits_are_413",),
        "the parser accepts any upload size when called outside the HTTP layer",
    ),
    Mutation(
        "masked-pixels-read-as-sky",
        "astropt/data/samples.py",
        "    flux = select_bands(fill_flagged(cube, bad, what), bands, wanted, what)",
        "    flux = select_bands(np.where(bad, 0.0, cube).astype(np.float32), bands, wanted, what)",
        ("tests/astropt/test_seed_schema.py",),
        "flagged pixels (mask, ivar = 0, NaN) reach the codec as empty sky",
    ),
    # -- issue #12, training side -------------------------------------------------------
    Mutation(
        "divergence-unchecked",
        "astropt/training/loop.py",
        "        self._check_loss(train_loss)\n",
        "",
        (
            "tests/astropt/test_train_guards.py::test_a_diverging_run_stops_failed_and_keeps_its_last_finite_checkpoint",
        ),
        "a run whose loss is NaN trains on, logs NaN and checkpoints NaN weights",
    ),
    Mutation(
        "cancel-ignored-between-micro-steps",
        "astropt/training/loop.py",
        "if micro and self._should_stop():",
        "if False:",
        (
            "tests/astropt/test_train_guards.py::test_cancel_between_micro_steps_of_a_long_accumulation",
        ),
        "a cancelled job with a large grad_accum waits for the whole step",
    ),
    Mutation(
        "cancel-ignored-while-tokenising",
        "astropt/tokenise.py",
        '        raise_if_stopped(stop, "tokenising")\n',
        "",
        ("tests/astropt/test_train_guards.py::test_cancel_during_tokenisation",),
        "a cancelled job stays cancelling until its data set is tokenised",
    ),
    Mutation(
        "attempt-limit-ignored",
        "state/store/recovery.py",
        "elif job.attempts >= max_attempts:",
        "elif False:",
        (
            "tests/service/test_store.py::test_a_job_whose_worker_keeps_dying_fails_after_its_last_attempt",
        ),
        "a job that kills its worker every time is queued again for ever",
    ),
    Mutation(
        "memory-estimate-skipped",
        "jobkinds/checks.py",
        "    _check_memory(spec, settings)\n",
        "",
        ("tests/service/test_spec_bounds.py::test_combinations_past_a_budget_are_refused",),
        "a job far beyond the memory budget is queued and killed by the kernel",
    ),
    Mutation(
        "claim-error-drops-the-message",
        "worker/tasks.py",
        "    except OperationalError as exc:\n",
        "    except ZeroDivisionError as exc:\n",
        ("tests/worker/test_claim_retry.py",),
        "a message that arrives while the store is busy is dropped and its job stays queued for ever",
    ),
    # -- users who own their jobs (issue #25) --------------------------------------------
    Mutation(
        "ownership-check-removed",
        "service/jobs/service.py",
        "    if job is None or (owner is not None and job.submitted_by != owner):\n",
        "    if job is None:\n",
        ("tests/service/test_users.py::test_users_own_their_jobs",),
        "any user reads, cancels and deletes anyone's job by its id",
    ),
    # -- warm starts and fine-tune resume ----------------------------------------------
    Mutation(
        "client-names-the-init-directory",
        "jobkinds/kinds/train.py",
        '        return spec.model_copy(update={"init_from_dir": None})  # only the service names it\n',
        "        return spec\n",
        (
            "tests/service/test_api.py::test_init_from_takes_the_checkpoints_shape_or_names_what_differs",
        ),
        "a client sets init_from_dir and a worker loads whatever directory it names",
    ),
    Mutation(
        "warm-start-ignores-a-shape-conflict",
        "astropt/training/warm_start.py",
        "    if conflicts:\n        raise InitMismatch(conflicts, where)\n",
        "",
        (
            "tests/astropt/test_warm_start.py::test_the_shape_and_codec_come_from_the_checkpoint_and_set_fields_must_match",
        ),
        "a spec's model shape silently loses to the checkpoint's",
    ),
    Mutation(
        "fine-tune-resume-accepts-a-changed-run",
        "astropt/finetune/resume.py",
        "    changed = sorted(k for k in now if k not in FREE_ON_RESUME and saved.get(k) != now[k])",
        "    changed = []",
        ("tests/astropt/test_finetune.py::test_a_stopped_fine_tune_resumes_exactly",),
        "a fine-tune resumed with another learning rate or labels continues as if nothing changed",
    ),
    # -- the live probe: labels belong to the galaxies embedded ----------------------------
    Mutation(
        "live-probe-labels-of-the-wrong-rows",
        "astropt/training/live_probe.py",
        "rows, ids = list(val.indices)[:n], list(val.object_ids or [])[:n]",
        "rows, ids = list(val.indices)[1:n + 1], list(val.object_ids or [])[:n]",
        (f"{T_PROBE}::test_live_probe_r2_equals_an_independent_probe_of_the_final_checkpoint",),
        "each probe galaxy gets its neighbour's labels: probe_r2 curves of noise that look plausible",
    ),
    Mutation(
        "probe-labels-rolled-against-embeddings",
        "astropt/science/model_probe.py",
        "out[name] = ridge_cv(x, y, folds=folds, alpha=alpha, seed=seed)",
        "out[name] = ridge_cv(x, np.roll(y, 1), folds=folds, alpha=alpha, seed=seed)",
        (f"{T_PROBE}::test_live_probe_r2_equals_an_independent_probe_of_the_final_checkpoint",),
        "labels one row out of step with the embeddings in every live and checkpoint probe",
    ),
    Mutation(
        "patch-centre-pool-ignores-the-patch-order",
        "astropt/patches.py",
        "order_ = order_indices(grid * grid, order).tolist()",
        "order_ = list(range(grid * grid))",
        (
            "tests/astropt/test_patch_science.py::test_centre_pooling_of_patches_covers_the_central_pixels",
        ),
        "a spiral-order patch model's centre pooling averages the patches of another part of the image",
    ),
)


# Chosen by the cost of their tests: each runs in a fresh copy, and these take seconds (the set
# runs in about two minutes on 2 cores with -j 2; the rest take minutes each).
CI_SET = frozenset(
    {
        "http-declared-size-check-removed",
        "catch-all-error-handler-removed",
        "embedding-pools-the-wrong-positions",
        "codec-fingerprint-check-disabled",
        "artifact-path-containment-removed",
        "parser-size-limit-removed",
        "masked-pixels-read-as-sky",
        "attempt-limit-ignored",
        "memory-estimate-skipped",
        "client-names-the-init-directory",
        "warm-start-ignores-a-shape-conflict",
        "claim-error-drops-the-message",
        "patch-centre-pool-ignores-the-patch-order",
        "ownership-check-removed",
    }
)


def copy_repo(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files, plus the .venv link (not its contents)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = REPO / rel
        if not src.is_file():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    venv = REPO / ".venv"
    if venv.exists():
        os.symlink(venv.resolve(), dest / ".venv")


def apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.file
    source = path.read_text()
    count = source.count(mutation.old)
    if count != 1:
        raise ValueError(f"{mutation.name}: the snippet occurs {count} times in {mutation.file}")
    path.write_text(source.replace(mutation.old, mutation.new))


def run_one(mutation: Mutation, timeout: float) -> tuple[str, float, str]:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutation.name}-") as tmp:
        root = Path(tmp) / "repo"
        copy_repo(root)
        try:
            apply(mutation, root)
        except ValueError as exc:
            return "NOT APPLIED", 0.0, str(exc)
        data = (
            Path(tmp) / "data"
        )  # fresh caches: a token cache from an earlier run must not hide a bug
        env = {
            **os.environ,
            "PYTHONPATH": str(root),
            "ASTROPT_DATA_DIR": str(data),
            "XDG_CACHE_HOME": str(Path(tmp) / "cache"),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }
        python = root / ".venv" / "bin" / "python"
        cmd = [
            str(python if python.exists() else sys.executable),
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            *mutation.tests,
        ]
        try:
            proc = subprocess.run(
                cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return "CAUGHT (timeout)", time.monotonic() - start, ""
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
        if proc.returncode == 1:
            verdict = "CAUGHT"
        elif proc.returncode == 0:
            verdict = "SURVIVED"
        else:  # 2-5: interrupted, internal or usage error, nothing collected
            verdict = f"ERROR (pytest exit {proc.returncode})"
        return verdict, time.monotonic() - start, tail[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-k", "--select", default="", help="only mutations whose name contains this"
    )
    parser.add_argument("--ci", action="store_true", help="only the bounded set CI runs (CI_SET)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutation")
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, help="mutations run at once (each in its own copy)"
    )
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.select in m.name and (not args.ci or m.name in CI_SET)]
    if args.list:
        for m in chosen:
            print(f"{m.name:40s} {m.file}: {m.why}\n{'':40s} tests: {', '.join(m.tests)}")
        return 0
    failed = []
    print(f"{len(chosen)} mutations, one at a time on a copy of {REPO}")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_one, m, args.timeout): m for m in chosen}
        for future in as_completed(futures):
            m = futures[future]
            verdict, seconds, detail = future.result()
            print(f"{verdict:18s} {m.name:40s} {seconds:6.0f}s  {detail}", flush=True)
            if not verdict.startswith("CAUGHT"):
                failed.append(m.name)
    caught = len(chosen) - len(failed)
    print(
        f"\n{caught}/{len(chosen)} caught; survived or not applied: {', '.join(failed) or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
