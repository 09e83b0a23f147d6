#!/usr/bin/env bash
# The trust model's set-up for a deployment, idempotent (run it again: what exists is kept).
#
#   deploy/secure.sh [--vhost songdaojia] [--dir /etc/songdaojia] [--publisher NAME]... \
#                    [--console NAME=AREA]... [--open311-client NAME]...
#
# Makes, in --dir (owner-only): the token signing key and the JWKS the services verify with,
# gateway secrets, Open311 client keys, and one broker login per service and outside party;
# on the broker (rabbitmqctl, run where the broker runs): the vhost, those users and their
# rights, the dead-letter policy, and guest's rights on the vhost removed.
# Then: copy deploy/env/*.env to /etc/songdaojia/, chown --dir to the services' user.
set -euo pipefail
cd "$(dirname "$0")/.."
exec ./sdj secure "$@"
