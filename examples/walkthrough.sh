#!/usr/bin/env bash
# Five minutes from a fresh checkout to logged email: starts the daemon on SQLite in a
# temporary folder on free loopback ports, creates an account and a rep, sends a BCC, two
# forwards and a reply with python3's smtplib, lists what was logged, and stops the daemon.
#
#   examples/walkthrough.sh            (uses `capture-server` if installed, else this checkout)
#
# Nothing outside the temporary folder is touched; it is removed at the end (KEEP=1 keeps it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
work="$(mktemp -d "${TMPDIR:-/tmp}/capture-walkthrough.XXXXXX")"
daemon_pid=""

cleanup() {
    if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "kept: $work"; fi
}
trap cleanup EXIT

# Run this checkout's code whatever is installed, with everything in the temporary folder.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export CAPTURE_SERVER_DATABASE_URL="sqlite:///$work/capture.db"
export CAPTURE_SERVER_QUARANTINE_DIR="$work/quarantine"
cs() { python3 -m capture_server "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
smtp_port="$(free_port)"
lmtp_port="$(free_port)"

step "1. create the database and start the daemon (SMTP 127.0.0.1:$smtp_port)"
cs init
# Not through the cs function: $! must be the daemon itself, so SIGTERM reaches it.
python3 -m capture_server serve --smtp "127.0.0.1:$smtp_port" --lmtp "127.0.0.1:$lmtp_port" \
    >"$work/daemon.log" 2>&1 &
daemon_pid=$!
python3 - "$smtp_port" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("the daemon did not start")
        time.sleep(0.1)
PY

step "2. an account (prints its three capture addresses) and a rep"
cs account add acme --name "Acme Inc" --domain acme.test --json | tee "$work/account.json"
cs user add acme rita@acme.test --name "Rita Rep"

step "3. send a BCC, an inline forward, a forward as attachment and a reply"
python3 - "$smtp_port" "$work/account.json" "$here/messages" <<'PY'
import json, smtplib, sys
from pathlib import Path

port, addresses, messages = int(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3])
sends = [
    ("bcc.eml", "rita@acme.test", addresses["bcc_address"]),
    ("forward_inline.eml", "rita@acme.test", addresses["forward_address"]),
    ("forward_attachment.eml", "rita@acme.test", addresses["forward_address"]),
    ("reply.eml", "carl@globex.test", addresses["reply_address"]),
]
for name, sender, rcpt in sends:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.ehlo("walkthrough.localhost")
        smtp.mail(sender)
        smtp.rcpt(rcpt)
        code, text = smtp.data((messages / name).read_bytes())
        print(f"{name:<24} -> {code} {text.decode()}")
PY

step "4. what was logged"
cs engagements list acme
cs contacts list acme
cs events acme
cs stats acme

step "5. stop the daemon (SIGTERM drains mail in flight)"
kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=""
echo "done: the daemon stopped cleanly"
