#!/usr/bin/env python3
"""Checks of the deployment artifacts that need more than one tool's say;
driven by scripts/check-deploy.

manifests DIR --bin BIN --secret-name NAME
    Rendered chart manifests: the idp-gate container's security context,
    probes and Secret-backed variables, the config checksum annotation, no
    secret value anywhere, ServiceMonitor/Service agreement; then the
    ConfigMap's config through `idp-gate check-config` with the variables
    the container gets (dummy values for the Secret's).

compose-plan COMPOSE_JSON --out PLAN --bin SERVICE=PATH... [--path CONTAINER=HOST]...
    Plans a native run of a `docker compose config --format json` stack on
    loopback: every container port gets a free local port, and every
    "service:port", "0.0.0.0:port" or "127.0.0.1:port" in commands,
    environments and healthchecks is rewritten to it.
compose-exec PLAN SERVICE
    Replaces this process with SERVICE's command, run natively.
compose-health PLAN SERVICE
    Runs SERVICE's healthcheck natively; its exit status.
compose-check-config PLAN SERVICE CONFIG_PATH
    `idp-gate check-config` on the host file mounted at CONFIG_PATH, with
    SERVICE's environment.
rewrite PLAN FILE
    Prints FILE with the addresses rewritten (prometheus.yml, README lines).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from typing import Any

import yaml

IDP_GATE_CONTAINER = "idp-gate"
SECRET_VARS = ("IDP_CLIENT_ID", "IDP_CLIENT_SECRET")


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.items.append(message)


def load_docs(directory: str) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".yaml"):
            path = os.path.join(directory, name)
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
            if doc:
                docs.append((path, doc))
    return docs


def pod_specs(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """(path, pod template) of every workload that runs an idp-gate container."""
    found = []
    for path, doc in docs:
        template = doc.get("spec", {}).get("template")
        if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet") and template:
            names = [c.get("name") for c in template.get("spec", {}).get("containers", [])]
            if IDP_GATE_CONTAINER in names:
                found.append((path, template))
    return found


def config_text(data: str) -> str:
    # The ConfigMap's block scalar ends the text with one newline that the
    # template's output (the checksum's input) does not have.
    return data[:-1] if data.endswith("\n") else data


def check_manifests(args: argparse.Namespace) -> int:
    docs = load_docs(args.dir)
    fail = Failures()
    fail.check(bool(docs), f"{args.dir}: no manifests")
    for path, doc in docs:
        fail.check(doc.get("kind") != "Secret", f"{path}: the chart must not render a Secret")
    configmaps = [
        (p, d) for p, d in docs if d.get("kind") == "ConfigMap" and "config.yaml" in d.get("data", {})
    ]
    fail.check(len(configmaps) == 1, f"{args.dir}: expected one ConfigMap with config.yaml, found {len(configmaps)}")
    if not configmaps:
        return report(fail)
    cm_path, cm = configmaps[0]
    config = config_text(cm["data"]["config.yaml"])
    checksum = hashlib.sha256(config.encode()).hexdigest()
    parsed = yaml.safe_load(config)
    secret_ref = parsed.get("idp", {}).get("clientSecret")
    fail.check(
        secret_ref in (None, "", "${IDP_CLIENT_SECRET:-}", "${IDP_CLIENT_SECRET}"),
        f"{cm_path}: idp.clientSecret must only refer to ${{IDP_CLIENT_SECRET}}, not hold a value",
    )

    env: dict[str, str] = {}
    pods = pod_specs(docs)
    for path, template in pods:
        annotations = template.get("metadata", {}).get("annotations", {}) or {}
        sums = {k: v for k, v in annotations.items() if k.startswith("checksum/")}
        fail.check(
            checksum in sums.values(),
            f"{path}: no pod annotation holds the ConfigMap's checksum {checksum} (has {sums})",
        )
        spec = template["spec"]
        container = next(c for c in spec["containers"] if c.get("name") == IDP_GATE_CONTAINER)
        sc = container.get("securityContext", {})
        pod_sc = spec.get("securityContext", {})
        fail.check(sc.get("readOnlyRootFilesystem") is True, f"{path}: readOnlyRootFilesystem must be true")
        fail.check(
            sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{path}: runAsNonRoot must be true"
        )
        fail.check(sc.get("allowPrivilegeEscalation") is False, f"{path}: allowPrivilegeEscalation must be false")
        fail.check(
            "ALL" in (sc.get("capabilities", {}) or {}).get("drop", []), f"{path}: capabilities must drop ALL"
        )
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})) or {}
        fail.check(seccomp.get("type") == "RuntimeDefault", f"{path}: seccompProfile must be RuntimeDefault")
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
        for probe, want in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (container.get(probe) or {}).get("httpGet", {})
            fail.check(get.get("path") == want, f"{path}: {probe} must GET {want}, not {get.get('path')}")
            port = get.get("port")
            fail.check(
                ports.get(port) == ports.get("idp-gate-admin") and port is not None,
                f"{path}: {probe} must use the admin port, not {port}",
            )
        for var in container.get("env", []):
            name = var.get("name")
            if name in SECRET_VARS:
                ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
                fail.check("value" not in var, f"{path}: {name} has a literal value")
                fail.check(
                    ref.get("name") == args.secret_name,
                    f"{path}: {name} must come from the Secret {args.secret_name}, not {ref.get('name')}",
                )
                env[name] = f"dummy-{name.lower().replace('_', '-')}"
            elif "value" in var:
                env[name] = str(var["value"])
        fail.check("IDP_CLIENT_ID" in env, f"{path}: IDP_CLIENT_ID is not set from the Secret")
        mounts = {m.get("name"): m.get("mountPath") for m in container.get("volumeMounts", [])}
        volumes = {v.get("name"): v for v in spec.get("volumes", [])}
        config_volumes = [
            n for n, v in volumes.items() if (v.get("configMap") or {}).get("name") == cm["metadata"]["name"]
        ]
        fail.check(
            any(mounts.get(n) == "/etc/idp-gate" for n in config_volumes),
            f"{path}: the ConfigMap {cm['metadata']['name']} is not mounted at /etc/idp-gate",
        )
    fail.check(bool(pods) or args.config_only, f"{args.dir}: no workload runs the {IDP_GATE_CONTAINER} container")
    if not pods:
        # Sidecar mode alone: the including chart's pod gets these from the
        # Secret through the same "idp-gate.sidecar" template.
        env.update({name: f"dummy-{name.lower().replace('_', '-')}" for name in SECRET_VARS})

    services = [d for _, d in docs if d.get("kind") == "Service"]
    for path, doc in docs:
        if doc.get("kind") != "ServiceMonitor":
            continue
        fail.check(doc.get("apiVersion") == "monitoring.coreos.com/v1", f"{path}: apiVersion")
        selector = doc.get("spec", {}).get("selector", {}).get("matchLabels", {})
        matched = [
            s for s in services if selector and all(s["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
        ]
        fail.check(len(matched) == 1, f"{path}: selector {selector} matches {len(matched)} Services")
        for ep in doc.get("spec", {}).get("endpoints", []):
            names = [p.get("name") for s in matched for p in s["spec"].get("ports", [])]
            fail.check(ep.get("port") in names, f"{path}: endpoint port {ep.get('port')} is not on the Service")
            fail.check(ep.get("path") == "/metrics", f"{path}: endpoint path must be /metrics")

    for path, doc in docs:
        text = json.dumps(doc.get("metadata", {}).get("annotations", {}) or {})
        for name in SECRET_VARS:
            fail.check(name.lower() not in text.lower(), f"{path}: an annotation mentions {name}")

    config_file = os.path.join(args.dir, "config.yaml.extracted")
    with open(config_file, "w", encoding="utf-8") as f:
        f.write(config)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "APK_", "AUTH0_"))}
    run_env.update(env)
    out = subprocess.run([args.bin, "check-config", config_file], env=run_env, capture_output=True, text=True)
    print(f"check-config {cm_path} (env: {', '.join(sorted(env)) or 'none'}):")
    print(out.stdout.rstrip())
    fail.check(out.returncode == 0, f"{cm_path}: idp-gate check-config refused the ConfigMap's config")
    return report(fail)


def report(fail: Failures) -> int:
    for item in fail.items:
        print(f"FAIL {item}", file=sys.stderr)
    return 1 if fail.items else 0


# --- compose ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compose_plan(args: argparse.Namespace) -> int:
    with open(args.compose_json, encoding="utf-8") as f:
        stack = json.load(f)
    ports: dict[str, int] = {}
    aliases: list[tuple[str, str]] = []
    taken: set[int] = set()
    for name, svc in stack["services"].items():
        container_ports = [int(p["target"]) for p in svc.get("ports", [])]
        container_ports += [int(str(p).split("/")[0]) for p in svc.get("expose", [])]
        for port in dict.fromkeys(container_ports):
            native = free_port()
            while native in taken:
                native = free_port()
            taken.add(native)
            target = f"127.0.0.1:{native}"
            for host in (name, "0.0.0.0", "127.0.0.1", "localhost"):
                aliases.append((f"{host}:{port}", target))
            ports[f"{name}:{port}"] = native
        for p in svc.get("ports", []):
            published = p.get("published")
            if published and str(published) != str(p["target"]):
                native = ports[f"{name}:{p['target']}"]
                for host in ("127.0.0.1", "localhost"):
                    aliases.append((f"{host}:{published}", f"127.0.0.1:{native}"))
    seen = {}
    for alias, target in aliases:
        if seen.setdefault(alias, target) != target:
            print(f"compose: {alias} is used by two services; cannot map it to loopback", file=sys.stderr)
            return 1
    plan = {
        "compose": os.path.abspath(args.compose_json),
        "ports": ports,
        "aliases": seen,
        "bins": dict(b.split("=", 1) for b in args.bin),
        "paths": dict(p.split("=", 1) for p in args.path),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(plan, f, indent=2)
    for key, native in ports.items():
        print(f"  {key} -> 127.0.0.1:{native}")
    return 0


def load_plan(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        plan = json.load(f)
    with open(plan["compose"], encoding="utf-8") as f:
        stack = json.load(f)
    return plan, stack


def rewriter(plan: dict[str, Any], service: dict[str, Any] | None = None):
    aliases = plan["aliases"]
    pattern = re.compile(
        r"(?<![\w.-])(" + "|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True)) + r")(?!\d)"
    )
    paths = dict(plan["paths"])
    if service:
        for v in service.get("volumes", []):
            if v.get("type") == "bind":
                paths.setdefault(v["target"], v["source"])

    def rewrite(text: str) -> str:
        text = pattern.sub(lambda m: aliases[m.group(1)], text)
        # Paths are replaced whole, alone or after "--flag=".
        flag, sep, value = text.partition("=")
        if sep and flag.startswith("-") and value in paths:
            return f"{flag}={paths[value]}"
        return paths.get(text, text)

    return rewrite


def native_service(plan_path: str, name: str) -> tuple[list[str], dict[str, str], dict[str, Any], Any]:
    plan, stack = load_plan(plan_path)
    svc = stack["services"].get(name)
    if svc is None:
        raise SystemExit(f"compose: no service {name}")
    rewrite = rewriter(plan, svc)
    binary = plan["bins"].get(name)
    if not binary:
        raise SystemExit(f"compose: no native binary given for {name} (--bin {name}=PATH)")
    argv = [binary] + [rewrite(a) for a in (svc.get("command") or [])]
    env = dict(os.environ)
    for key, value in (svc.get("environment") or {}).items():
        if value is not None:
            env[key] = rewrite(str(value))
    return argv, env, svc, rewrite


def compose_exec(args: argparse.Namespace) -> int:
    argv, env, _, _ = native_service(args.plan, args.service)
    print(f"{args.service}: {' '.join(argv)}", flush=True)
    os.execvpe(argv[0], argv, env)
    return 1


def compose_health(args: argparse.Namespace) -> int:
    plan, _ = load_plan(args.plan)
    _, env, svc, rewrite = native_service(args.plan, args.service)
    test = (svc.get("healthcheck") or {}).get("test") or []
    if not test or test[0] != "CMD":
        print(f"{args.service}: healthcheck must be an exec-form CMD (the image has no shell): {test}", file=sys.stderr)
        return 1
    command = [rewrite(a) for a in test[1:]]
    binary = plan["bins"].get(args.service)
    if command and command[0] == "/usr/local/bin/idp-gate":
        command[0] = binary
    return subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def compose_check_config(args: argparse.Namespace) -> int:
    plan, _ = load_plan(args.plan)
    _, env, svc, rewrite = native_service(args.plan, args.service)
    host_file = rewrite(args.config_path)
    if host_file == args.config_path or not os.path.isfile(host_file):
        print(f"{args.service}: nothing is mounted at {args.config_path}", file=sys.stderr)
        return 1
    binary = plan["bins"][args.service]
    out = subprocess.run([binary, "check-config", host_file], env=env, capture_output=True, text=True)
    print(out.stdout.rstrip())
    return out.returncode


def rewrite_file(args: argparse.Namespace) -> int:
    plan, _ = load_plan(args.plan)
    rewrite = rewriter(plan)
    with open(args.file, encoding="utf-8") as f:
        sys.stdout.write("".join(rewrite(line[:-1]) + "\n" if line.endswith("\n") else rewrite(line) for line in f))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("manifests")
    p.add_argument("dir")
    p.add_argument("--bin", required=True)
    p.add_argument("--secret-name", required=True)
    p.add_argument("--config-only", action="store_true", help="no workload expected (sidecar mode alone)")
    p.set_defaults(run=check_manifests)
    p = sub.add_parser("compose-plan")
    p.add_argument("compose_json")
    p.add_argument("--out", required=True)
    p.add_argument("--bin", action="append", default=[])
    p.add_argument("--path", action="append", default=[])
    p.set_defaults(run=compose_plan)
    p = sub.add_parser("compose-exec")
    p.add_argument("plan")
    p.add_argument("service")
    p.set_defaults(run=compose_exec)
    p = sub.add_parser("compose-health")
    p.add_argument("plan")
    p.add_argument("service")
    p.set_defaults(run=compose_health)
    p = sub.add_parser("compose-check-config")
    p.add_argument("plan")
    p.add_argument("service")
    p.add_argument("config_path")
    p.set_defaults(run=compose_check_config)
    p = sub.add_parser("rewrite")
    p.add_argument("plan")
    p.add_argument("file")
    p.set_defaults(run=rewrite_file)
    args = parser.parse_args()
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
