"""Build the HTML book from executed notebooks, in a staging folder, with no network at page time.

    python book/build_book.py --executed _build/executed --out _build/book

1. Stages `_config.yml`, `_toc.yml` and `book/` into OUT/src, with the executed copies of the
   notebooks (from EXECUTED, as book/run_notebooks.py writes them) in OUT/src/notebooks, so that page
   paths match the repository (the Colab and download buttons point at `notebooks/NN_name.ipynb`).
2. Writes into each staged notebook a box saying which profile, data, device and commit its outputs
   came from (read from the notebook's own `profile: ... | data: ...` line, else papermill's parameters).
3. Copies require.js, the widget manager and MathJax from their pinned npm packages into the staged
   `book/_static/vendor` (book/fetch_assets.py), so that no page loads anything from a CDN.
4. Exports the live models of notebook 3 (the shipped long-profile models as ONNX files, with the
   onnxruntime-web files) into the staged `book/_static/live`, each file's sha256 in its manifest.json.
5. Runs `jupyter-book build` with warnings as errors (`-W --keep-going`); HTML in OUT/_build/html.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fetch_assets  # noqa: E402  (book/fetch_assets.py, beside this file)

STAGED_KEY = "augmax_book"  # also read by book/_ext/augmax_book.py
# The line augmax_lib.course.params.resolve() prints at the top of every notebook.
ANNOUNCE = re.compile(r"^profile: (?P<profile>\S+) \| data: (?P<data>.+?) \| device: (?P<device>\S+) \| "
                      r"seed: (?P<seed>\d+)", re.M)
FALLBACK = re.compile(r"Falling back to the SYNTHETIC", re.I)


def profile_meaning(profile: str) -> str:
    """What a profile's numbers mean and what it runs, read from its file (configs/profiles/<profile>.yaml)."""
    from augmax_lib.course.params import known_profiles, profile_about, profile_facts

    if profile not in known_profiles():
        return "This is a custom profile."
    return f"{profile_about(profile)} In numbers: {profile_facts(profile)}"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def provenance(nb: dict) -> dict:
    """What a reader must know about where this executed notebook's outputs came from."""
    pm = nb.get("metadata", {}).get("papermill", {})
    found = {}
    synthetic = False
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            synthetic = synthetic or bool(FALLBACK.search(text))
            match = ANNOUNCE.search(text)
            if match and not found:
                found = match.groupdict()
    parameters = pm.get("parameters", {})
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no", "--", "augmax_lib", "notebooks"):
        commit += "+local-changes"
    end = pm.get("end_time") or ""
    return {
        "profile": found.get("profile") or parameters.get("profile") or "unknown",
        "data": found.get("data") or "not recorded by the notebook",
        "synthetic": synthetic,
        "device": found.get("device") or parameters.get("device") or "not recorded",
        "seed": found.get("seed") or parameters.get("seed"),
        "executed": end[:10] or "unknown date",
        "commit": commit or "unknown",
        "failed": bool(pm.get("exception")),
    }


def provenance_markdown(p: dict, name: str) -> str:
    kind = "note"
    lines = [f"```{{admonition}} Outputs from the {p['profile']} profile",
             f":class: {kind} augmax-provenance",
             f"The outputs on this page were computed on {p['executed']} in the **{p['profile']}** profile, "
             f"on **{p['data']}**, device `{p['device']}`"
             + (f", seed {p['seed']}" if p["seed"] is not None else "")
             + f", with augmax_lib at commit `{p['commit']}`.",
             "",
             profile_meaning(p["profile"])]
    if p["synthetic"]:
        lines += ["", "The data set was not found, so this run used the **synthetic** shapes data set: "
                      "its images and numbers say nothing about CIFAR."]
    if p["failed"]:
        lines += ["", "**This notebook failed while it ran**: the outputs stop at the failing cell."]
    lines += ["", f"To reproduce it: `papermill notebooks/{name} out.ipynb -p profile full` "
                  "(see [How to run everything](../book/running.md)), or open it in Colab with the "
                  "rocket button above.", "```"]
    return "\n".join(lines)


def stage_notebook(src: Path, dst: Path) -> dict:
    nb = json.loads(src.read_text(encoding="utf-8"))
    p = provenance(nb)
    cell = {"cell_type": "markdown", "id": "augmax-provenance", "metadata": {"tags": ["augmax-provenance"]},
            "source": provenance_markdown(p, src.name)}
    cells = nb.setdefault("cells", [])
    for c in cells:  # papermill's injected cell repeats the parameters: the box above says them
        tags = c.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    first_is_title = bool(cells) and cells[0].get("cell_type") == "markdown" and \
        "".join(cells[0].get("source", "")).lstrip().startswith("# ")
    cells.insert(1 if first_is_title else 0, cell)
    nb["metadata"][STAGED_KEY] = p
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return p


def toc_notebooks() -> list[str]:
    """The notebook names _toc.yml lists (`notebooks/NN_name` entries), in order."""
    import yaml

    found = []

    def walk(node):
        if isinstance(node, dict):
            entry = node.get("file", "")
            if isinstance(entry, str) and entry.startswith("notebooks/"):
                found.append(entry.split("/", 1)[1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    return found


def stage(executed: Path, src: Path) -> dict[str, dict]:
    """Fill `src` with the book's sources, the executed notebooks and the vendored scripts."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "book", src / "book",
                    ignore=shutil.ignore_patterns("node_modules", "__pycache__", "*.py", "package*.json"))
    shutil.copytree(ROOT / "book" / "_ext", src / "book" / "_ext", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (src / "notebooks").mkdir()
    notebooks = sorted(executed.glob("[0-9][0-9]_*.ipynb"))
    missing = [n for n in toc_notebooks() if not (executed / f"{n}.ipynb").is_file()]
    if missing:
        raise SystemExit(f"{executed} has no executed copy of {', '.join(missing)} (listed in _toc.yml): "
                         "run `make notebooks` (book/run_notebooks.py) first")
    staged = {nb.name: stage_notebook(nb, src / "notebooks" / nb.name) for nb in notebooks}
    fetch_assets.copy_to(src / "book" / "_static")
    # The live models of notebook 3: ONNX files of the shipped models, their sha256 in _static/live/manifest.json.
    from augmax_lib.course.live_models import export_for_book

    manifest = export_for_book(src / "book" / "_static")
    print(f"live models: {', '.join(m['file'] + ' ' + m['sha256'][:12] for m in manifest['models'].values())}",
          file=sys.stderr)
    return staged


def build(src: Path, out: Path, strict: bool = True) -> int:
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(src), "--path-output", str(out)]
    if strict:
        cmd += ["-W", "--keep-going"]
    return subprocess.run(cmd, cwd=ROOT).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executed", type=Path, default=ROOT / "_build" / "executed",
                        help="folder of executed notebooks (book/run_notebooks.py --out)")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "book")
    parser.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    staged = stage(args.executed.resolve(), out / "src")
    if not staged:
        print(f"No executed notebooks in {args.executed}: the book has no course pages "
              "(run `make notebooks` first).", file=sys.stderr)
    for name, p in staged.items():
        print(f"staged {name}: {p['profile']} profile, {p['data']}", file=sys.stderr)
    code = build(out / "src", out, strict=not args.no_strict)
    if code == 0:
        print(f"Book: {out / '_build' / 'html' / 'index.html'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
