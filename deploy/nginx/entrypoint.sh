#!/bin/sh
# Renders /etc/nginx/templates/*.template into /tmp/conf.d (substituting only the
# EXPOSURE_* variables that are set, so nginx's own $variables stay), checks the result,
# then runs nginx in the foreground.
set -eu
mkdir -p /tmp/conf.d
vars=$(env | sed -n 's/^\(EXPOSURE_[A-Z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
    [ -e "$template" ] || continue
    out=/tmp/conf.d/$(basename "$template" .template).conf
    envsubst "$vars" < "$template" > "$out"
done
nginx -t -q
exec nginx -g 'daemon off;'
