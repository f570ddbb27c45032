"""`python -m local`: the whole backend on loopback until Ctrl-C (or SIGTERM)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from local.stack import DEMO_TENANT_ID, OTHER_TENANT_ID, LocalStack, StackError


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the contact-sync backend on the local stack.")
    parser.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                        help="fix a port, e.g. --port manage_tenants=8080 (default: free ports)")
    args = parser.parse_args()
    ports = {}
    for item in args.port:
        name, _, value = item.partition("=")
        ports[name] = int(value)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stack = LocalStack(demo_tenant=True, ports=ports)
    try:
        stack.start()
    except StackError as error:
        print(error, file=sys.stderr)
        return 1
    try:
        print(banner(stack), flush=True)
        stop.wait()
    finally:
        print("\nstopping the local stack …", flush=True)
        stack.stop()
        print("stopped every process the stack started.", flush=True)
    return 0


def banner(stack: LocalStack) -> str:
    u = stack.urls
    lines = ["", "contact-sync local stack is up (Ctrl-C stops everything)", ""]
    for name in ("tenant_portal", "manage_tenants", "register_device", "relay_contacts", "handle_deletion",
                 "sweep_retention"):
        if name in u:
            lines.append(f"  {name:<16} {u[name]}")
    lines += [f"  {'firestore':<16} {u['firestore']}", f"  {'pubsub':<16} {u['pubsub']}",
              f"  {'storage':<16} {u['gcs']}", f"  {'entra (fake)':<16} {u['entra']}",
              f"  {'graph (fake)':<16} {u['graph']}", f"  {'CA bundle':<16} {u['ca']}",
              f"  {'logs':<16} {stack.state_dir}/", "",
              f"demo tenant: {DEMO_TENANT_ID}", ""]
    if "tenant_portal" in u:
        accounts = stack.demo_accounts
        demo, other = accounts.get(DEMO_TENANT_ID, {}), accounts.get(OTHER_TENANT_ID, {})
        lines += [f"administration portal: {u['tenant_portal']}  (open it in a browser; the fake Microsoft "
                  "sign-in page lists these accounts)",
                  f"  admin of the demo tenant        {demo.get('admin', '?')}",
                  f"  plain user of the demo tenant   {demo.get('user', '?')}",
                  f"  admin of a tenant not onboarded {other.get('admin', '?')}",
                  "try onboarding as a new customer: open the portal, choose \"Add your organisation\", sign in as",
                  f"  {other.get('admin', '?')}, give a name, accept on the fake consent page: the overview shows",
                  f"  the organisation, and {u.get('manage_tenants', '')}/tenants lists it.", ""]
    lines += ["try it:",
              f"  curl -s -X POST {u['manage_tenants']}/tenants -H 'Content-Type: application/json' \\",
              "       -d '{\"tenantId\":\"3f2504e0-4f89-41d3-9a0c-0305e82c3301\",\"name\":\"Fabrikam AG\"}'",
              f"  curl -s {u['manage_tenants']}/tenants/3f2504e0-4f89-41d3-9a0c-0305e82c3301",
              f"  curl -s -X DELETE {u['manage_tenants']}/tenants/3f2504e0-4f89-41d3-9a0c-0305e82c3301",
              f"  curl -s {u['manage_tenants']}/receipts/<requestId from the line above>"]
    if "relay_contacts" in u:
        lines += ["", "play the app end to end (register a device, sync contacts, photos):",
                  f"  .venv/bin/python -m local.demo_client --stack-file {stack.state_dir}/stack.json",
                  "the same with the demo tenant scoped to a demo group (only its members and their photos):",
                  f"  .venv/bin/python -m local.demo_client --stack-file {stack.state_dir}/stack.json "
                  "--scope-demo-group"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
