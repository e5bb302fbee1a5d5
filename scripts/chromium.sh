#!/usr/bin/env bash
# Headless Chromium for busctl's browser tests (cmd/busctl/internal/console).
#
#   scripts/chromium.sh run -- CMD...   find Chromium (installing Debian's package when missing),
#                                       run CMD with BUSLINE_CHROMIUM set to its path
#   scripts/chromium.sh path            print the path, installing when missing
#
# The tests drive this browser through the DevTools protocol (chromedp); they
# never download one. If BUSLINE_CHROMIUM is already set, `run` uses it. If
# no browser can be had, `run` fails when CI=true and otherwise runs CMD
# without BUSLINE_CHROMIUM (the browser tests then skip, saying why).
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_browser() {
	if [ -n "${BUSLINE_CHROMIUM:-}" ] && [ -x "$BUSLINE_CHROMIUM" ]; then
		echo "$BUSLINE_CHROMIUM"
		return 0
	fi
	command -v chromium || command -v chromium-browser
}

install_browser() {
	log "chromium is not installed; installing Debian's package"
	local sudo=""
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || { log "not root and no sudo: cannot install chromium"; return 1; }
		sudo="sudo -n"
	fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get -o DPkg::Lock::Timeout=300 update -q >&2 || return 1
	$sudo apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends chromium fonts-dejavu-core >&2 || return 1
}

browser() { find_browser || { install_browser && find_browser; }; }

cmd=${1:-}
shift || true
case "$cmd" in
run)
	[ "${1:-}" = "--" ] && shift
	if path=$(browser); then
		export BUSLINE_CHROMIUM="$path"
		exec "$@"
	fi
	if [ "${CI:-}" = "true" ]; then
		log "no chromium, and CI=true: failing"
		exit 1
	fi
	log "no chromium: the browser tests will skip"
	exec "$@"
	;;
path) browser ;;
*)
	sed -n '2,12p' "$0" >&2
	exit 2
	;;
esac
