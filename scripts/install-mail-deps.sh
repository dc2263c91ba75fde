#!/usr/bin/env bash
# Install what the mail-server tests need from Debian's packages, only when it is missing:
# Dovecot's IMAP and LMTP servers (started by the tests themselves; no systemd needed) and
# openssl for the throw-away TLS certificate.
set -euo pipefail
missing=()
command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd dovecot-lmtpd)
[ -e /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
else
  sudo=
fi
echo "installing ${missing[*]} (Debian packages) for the mail-server tests"
$sudo apt-get update -qq
# policy-rc.d may refuse to start the system Dovecot: harmless, the tests start their own.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
