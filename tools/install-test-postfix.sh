#!/usr/bin/env bash
# Install Postfix and swaks from Debian's packages for tests/integration/test_postfix.py.
#
# The package's own Postfix service never starts: a policy-rc.d that answers 101 ("action
# forbidden") is in place during the install, and debconf is told "No configuration", so
# the package writes no main.cf and nothing listens. The test runs its own Postfix
# instance from a private config directory. Idempotent: returns at once when both
# programs are already installed. Needs root (apt-get).
set -euo pipefail
# postfix lives in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

if command -v postfix >/dev/null 2>&1 && command -v swaks >/dev/null 2>&1; then
    echo "install-test-postfix: postfix and swaks already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-postfix: must run as root (apt-get install)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    # Ours only for the install; a policy the machine already had is left alone.
    printf '#!/bin/sh\n# capture-server tests: never start services from packages\nexit 101\n' \
        >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

apt-get update -q
apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    postfix swaks

# Belt and braces: were a system instance running anyway, stop it.
if [ -f /etc/postfix/main.cf ] && postfix status >/dev/null 2>&1; then
    postfix stop || true
fi

command -v postfix >/dev/null && command -v swaks >/dev/null
echo "install-test-postfix: installed $(postconf -d -h mail_version 2>/dev/null || echo postfix)"
