/*
 * report.h: `adtrack report`, a report from coredata's GET /v1/reports (docs/REPORTS.md).
 */
#ifndef REPORT_H
#define REPORT_H

/* Runs `adtrack report`; @p argv[0] is "report", the options follow. Returns the exit
 * status: 0 ok, 1 the API refused (its errors on stderr), 2 usage, 3 coredata unreachable. */
int report_main(int argc, char **argv);

#endif
