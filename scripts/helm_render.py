#!/usr/bin/env python3
"""Lints and renders a Helm chart with Helm's own engine (helm-python-sdk,
the Helm v4 Go SDK behind a C ABI), offline, as `helm lint --strict` and
`helm template` would.

    helm_render.py lint CHART [-f VALUES]... [--subchart DIR]...
    helm_render.py render CHART --out DIR [--release NAME] [-f VALUES]... [--subchart DIR]...

--subchart copies a chart into a scratch copy of CHART's charts/ first (the
offline equivalent of `helm dependency build` for a file:// dependency).
`render` writes one file per manifest document to DIR, named
NN-Kind-name.yaml. Exit 1 on any lint finding of level warning or above, on
a values file the schema refuses, or on a template error, with Helm's
message on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
from typing import Any, Iterator

import helm_python as helm
import yaml

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
NAMESPACE = "apk"


def merged_values(files: list[str]) -> dict[str, Any]:
    """Values files merged left to right, maps deeply, as `-f a -f b` does."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    values: dict[str, Any] = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            values = merge(values, helm.values_from_yaml(f.read()))
    return values


@contextlib.contextmanager
def chart_dir(chart: str, subcharts: list[str]) -> Iterator[str]:
    """CHART itself, or a scratch copy with SUBCHARTS in its charts/."""
    if not subcharts:
        yield chart
        return
    with tempfile.TemporaryDirectory(prefix="helm-render-") as tmp:
        copy = os.path.join(tmp, os.path.basename(os.path.normpath(chart)))
        shutil.copytree(chart, copy)
        for sub in subcharts:
            name = os.path.basename(os.path.normpath(sub))
            shutil.copytree(sub, os.path.join(copy, "charts", name))
        yield copy


def lint(chart: str, values: dict[str, Any]) -> int:
    report = helm.lint(chart, values, strict=True, namespace=NAMESPACE, with_subcharts=True)
    failures = 0
    for m in report.get("messages", []):
        level = SEVERITY.get(m.get("severity", 0), "UNKNOWN")
        line = f"[{level}] {m.get('path')}: {m.get('error')}".rstrip()
        if m.get("severity", 0) >= 2:
            failures += 1
            print(line, file=sys.stderr)
        else:
            print(line)
    for e in report.get("errors", []):
        if not any(e == m.get("error") for m in report.get("messages", [])):
            failures += 1
            print(f"[ERROR] {e}".rstrip(), file=sys.stderr)
    print(f"{chart}: {report.get('total_charts_linted', 0)} chart(s) linted, {failures} failure(s)")
    return 1 if failures else 0


def render(chart: str, values: dict[str, Any], out: str, release: str) -> int:
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(values, name=release, namespace=NAMESPACE, is_install=True)
    os.makedirs(out, exist_ok=True)
    count = 0
    for template in sorted(manifests):
        if template.endswith("NOTES.txt"):
            continue
        # Each document is written as Helm rendered it, not re-serialised.
        for text in re.split(r"^---[ \t]*$", manifests[template], flags=re.MULTILINE):
            doc = yaml.safe_load(text)
            if not doc:
                continue
            count += 1
            kind = doc.get("kind", "Unknown")
            name = doc.get("metadata", {}).get("name", "unnamed")
            path = os.path.join(out, f"{count:02d}-{kind}-{re.sub(r'[^A-Za-z0-9.-]', '_', name)}.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"# Source: {template}\n{text.strip()}\n")
            print(path)
    if count == 0:
        print(f"{chart}: rendered no manifest", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["lint", "render"])
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--subchart", action="append", default=[])
    parser.add_argument("--out")
    parser.add_argument("--release", default="idp-gate", help="release name (default idp-gate)")
    args = parser.parse_args()
    if args.action == "render" and not args.out:
        parser.error("render needs --out")
    try:
        values = merged_values(args.values)
        with chart_dir(args.chart, args.subchart) as chart:
            if args.action == "lint":
                return lint(chart, values)
            return render(chart, values, args.out, args.release)
    except helm.HelmError as e:
        print(f"helm: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
