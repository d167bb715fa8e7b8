/* version.h - parrot's version, in this one place.
 *
 * `parrot --version`, --help, the start-up log line and (through
 * cfg_version()) the metrics read it from here; CHANGELOG.md names the same
 * number for each release. A build may add -DPARROT_GIT_REV="..." to also
 * show the revision it was built from; cfg_git_rev() is "" without it.
 */
#ifndef PARROT_VERSION_H
#define PARROT_VERSION_H

#define PARROT_VERSION "0.5.0"

#endif
