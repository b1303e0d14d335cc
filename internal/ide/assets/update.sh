#!/usr/bin/env bash
# Re-copies the GraphQL IDE's third-party browser builds from npm into dist/,
# which is committed so that `go build` never needs npm or a network.
#
# Versions are pinned in src/package.json and locked in src/package-lock.json:
#   graphiql 3.8.3 (graphiql.min.js, graphiql.min.css)
#   react 18.3.1, react-dom 18.3.1 (UMD production builds)
#   graphql-ws 6.4.2 (UMD build, global `graphqlWs`)
# To upgrade: edit src/package.json, run `npm install` in src/, then this script,
# and check the IDE still renders (go test ./internal/ide/ and e2e/ide.test.js).
set -euo pipefail
cd "$(dirname "$0")"

(cd src && npm ci --no-audit --no-fund)

nm=src/node_modules
rm -rf dist
mkdir -p dist/licenses

copy() { # copy SRC DEST: drop the sourceMappingURL comment, since the maps are not shipped
	sed -e 's|^//# sourceMappingURL=.*$||' -e 's|/\*# sourceMappingURL=[^*]*\*/||' "$1" >"dist/$2"
}
copy "$nm/graphiql/graphiql.min.js" graphiql.min.js
copy "$nm/graphiql/graphiql.min.css" graphiql.min.css
copy "$nm/react/umd/react.production.min.js" react.production.min.js
copy "$nm/react-dom/umd/react-dom.production.min.js" react-dom.production.min.js
copy "$nm/graphql-ws/umd/graphql-ws.min.js" graphql-ws.min.js

for p in graphiql react react-dom graphql-ws; do
	lic=$(ls "$nm/$p"/LICENSE* | head -n1)
	cp "$lic" "dist/licenses/$p.LICENSE"
done

{
	echo "Copied by update.sh from npm; do not edit by hand."
	for p in graphiql react react-dom graphql-ws; do
		printf '%s %s\n' "$p" "$(node -p "require('./$nm/$p/package.json').version")"
	done
} >dist/VERSIONS
cat dist/VERSIONS
