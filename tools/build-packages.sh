#!/bin/sh
# Builds the Debian packages (debian/) into build-deb/ and prints how long it took.
#   tools/build-packages.sh            release packages: optimised, no -dbgsym packages
#   DEB_BUILD_OPTIONS=... tools/build-packages.sh   your options instead; CI (cheap, -O0):
#     DEB_BUILD_OPTIONS="noopt noautodbgsym" tools/build-packages.sh
# dpkg-buildpackage writes to the parent directory; the results are moved here.
set -eu
cd "$(dirname "$0")/.."
out=build-deb
log=build-deb.log
start=$(date +%s)
: "${DEB_BUILD_OPTIONS=noautodbgsym}"
export DEB_BUILD_OPTIONS="parallel=$(nproc) $DEB_BUILD_OPTIONS"
echo "building packages (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS), log in $log"
if ! dpkg-buildpackage -b -us -uc >"$log" 2>&1; then
  tail -40 "$log"
  exit 1
fi
rm -rf "$out" && mkdir -p "$out"
version=$(dpkg-parsechangelog -S Version)
for file in ../qrexec-cpp*_"$version"_*.deb ../qrexec-cpp*_"$version"_*.ddeb \
            ../qrexec-cpp_"$version"_*.buildinfo ../qrexec-cpp_"$version"_*.changes; do
  if [ -e "$file" ]; then mv "$file" "$out/"; fi
done
echo "packages built in $(($(date +%s) - start)) s:"
ls "$out"
