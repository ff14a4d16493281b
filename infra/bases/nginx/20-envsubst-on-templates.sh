#!/bin/sh
# As the official nginx image does: each /etc/nginx/templates/NAME.template becomes /etc/nginx/conf.d/NAME,
# with every ${VAR} that names a variable of the environment replaced by its value (others, such as
# nginx's own $host, are left alone).
set -eu
templates=/etc/nginx/templates
output=/etc/nginx/conf.d
[ -d "$templates" ] || exit 0
defined=$(awk 'END { for (name in ENVIRON) printf "${%s} ", name }' < /dev/null)
find "$templates" -follow -type f -name '*.template' | while read -r template; do
    relative=${template#"$templates"/}
    target="$output/${relative%.template}"
    mkdir -p "$(dirname "$target")"
    envsubst "$defined" < "$template" > "$target"
    echo "$0: rendered $template into $target"
done
