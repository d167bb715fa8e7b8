/* replay.h - `parrot replay FILE...`: what a cache would have saved on a
 * request log, without calling any provider (docs/audit.md, "Replay").
 *
 * Runs on the calling thread only; builds its own in-memory cache from the
 * same options the server reads (flags, environment, config file), never
 * opens the data directory.
 */
#ifndef PARROT_REPLAY_H
#define PARROT_REPLAY_H

/* The command: argv[1] is "replay". Prints the report on stdout (text, or
 * JSON with --json) and progress on stderr. Returns the exit status: 0, 1
 * when a file cannot be read, 2 on bad usage. */
int replay_main(int argc, char **argv, char **envp);

#endif
