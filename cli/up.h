/*
 * up.h: `adtrack up`, the whole pipeline on embedded defaults, supervised (docs/UP.md).
 */
#ifndef UP_H
#define UP_H

/* Runs `adtrack up`; @p argv[0] is "up", the options follow. Returns the process exit
 * status: 0 after a clean shutdown (SIGINT/SIGTERM) or --help, 1 when start-up failed,
 * 2 for a usage error. */
int up_main(int argc, char **argv);

#endif
