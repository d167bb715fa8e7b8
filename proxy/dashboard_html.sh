#!/bin/sh
# Turns proxy/dashboard.html into the C string literal lines that
# proxy/dashboard.c includes (proxy/dashboard_html.inc). The Makefile runs it
# when the page changes. '?' is escaped so that no "??x" becomes a trigraph.
set -eu
cd "$(dirname "$0")"
{
    echo "/* Generated from proxy/dashboard.html by proxy/dashboard_html.sh; do not edit. */"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/"/' -e 's/$/\\n"/' dashboard.html
} >dashboard_html.inc.tmp
mv dashboard_html.inc.tmp dashboard_html.inc
