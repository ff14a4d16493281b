#!/bin/sh
# The official nginx image's entrypoint contract: before nginx starts, run each executable
# /docker-entrypoint.d/*.sh in order, then exec the command.
set -e
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    for script in $(find /docker-entrypoint.d/ -follow -type f -name '*.sh' | sort -V); do
        if [ -x "$script" ]; then
            "$script"
        else
            echo "$0: ignoring $script, not executable"
        fi
    done
fi
exec "$@"
