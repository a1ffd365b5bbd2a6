/*
 * reconcile.h: `adtrack rollups reconcile` (docs/REPORTS.md, "Reconciliation").
 */
#ifndef RECONCILE_H
#define RECONCILE_H

/* Runs `adtrack rollups ...`; @p argv[0] is "rollups", the subcommand and its options
 * follow. Returns the exit status: 0 no drift (or all of it repaired), 1 drift found and not
 * repaired, 2 usage error or unreachable/unreadable store. */
int rollups_main(int argc, char **argv);

#endif
