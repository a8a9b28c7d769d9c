#!/usr/bin/python3
"""test/hardening/valgrind_scan.py LOGDIR [MEISA_SRC]

Reads the memcheck logs of valgrind.sh (one file per process, LOGDIR/<pid>.log)
and splits them into error records.  A record starts with an unindented line
after the "==pid== " prefix ("Invalid read of size 4", "Conditional jump or
move depends on uninitialised value(s)", "... are definitely lost in loss
record ...") and ends at the next blank prefixed line.  A record is meisa's
when one of its stack frames is in meisa.so (or names a source file under
MEISA_SRC, the tree meisa.so was built from).  Prints the totals, the ERROR
SUMMARY sum, every meisa record in full, and one line per distinct other
record (its kind and top frames) as a note.  Exit status 0 when no record
names meisa, 1 otherwise.
"""
import collections
import glob
import os
import re
import sys

PREFIX = re.compile(r'^==(\d+)== ?(.*)$')
ERROR_KINDS = re.compile(
    r'^(Invalid (read|write|free)|Mismatched free|Conditional jump or move depends on uninitialised'
    r'|Use of uninitialised value|Syscall param .* (points to|contains) uninitialised'
    r'|Source and destination overlap|.* are definitely lost in loss record'
    r'|Argument .* of function .* has a fishy value|Invalid alignment|Process terminating with default action)')
SUMMARY = re.compile(r'^ERROR SUMMARY: (\d+) errors from (\d+) contexts \(suppressed: (\d+) from (\d+)\)')


def records(path):
    """Yields (pid, kind line, frame lines) for each error record of one log."""
    cur = None
    with open(path, errors='replace') as f:
        for line in f:
            m = PREFIX.match(line.rstrip('\n'))
            if not m:
                continue
            pid, text = m.group(1), m.group(2)
            if text.strip() == '':
                if cur:
                    yield cur
                cur = None
                continue
            if cur is None:
                if not text.startswith(' ') and ERROR_KINDS.match(text):
                    cur = (pid, text, [])
            else:
                cur[2].append(text)
    if cur:
        yield cur


def main():
    logdir = sys.argv[1]
    meisa_src = sys.argv[2] if len(sys.argv) > 2 else None
    logs = sorted(glob.glob(os.path.join(logdir, '*.log')))
    total = 0
    summary_errors = summary_suppressed = 0
    mine = []
    others = collections.Counter()
    kinds = collections.Counter()
    for path in logs:
        with open(path, errors='replace') as f:
            for line in f:
                m = PREFIX.match(line.rstrip('\n'))
                if m:
                    s = SUMMARY.match(m.group(2))
                    if s:
                        summary_errors += int(s.group(1))
                        summary_suppressed += int(s.group(3))
        for pid, kind, frames in records(path):
            total += 1
            short = re.sub(r'\d+', 'N', kind)
            kinds[short] += 1
            in_meisa = any('meisa.so' in fr or (meisa_src and meisa_src in fr) for fr in frames)
            if in_meisa:
                mine.append((path, kind, frames))
            else:
                top = [re.sub(r'0x[0-9A-Fa-f]+: ', '', fr.strip()) for fr in frames
                       if fr.strip().startswith(('at ', 'by '))][:4]
                others[(short, ' / '.join(top))] += 1
    print('valgrind logs: %d (one per process)' % len(logs))
    print('ERROR SUMMARY sum: %d errors (%d suppressed)' % (summary_errors, summary_suppressed))
    print('error records total: %d' % total)
    print('error records in meisa.so: %d' % len(mine))
    for k, n in kinds.most_common():
        print('  %5d  %s' % (n, k))
    for path, kind, frames in mine[:20]:
        print('--- meisa: %s' % path)
        print('    ' + kind)
        for fr in frames[:30]:
            print('    ' + fr)
    if others:
        print('note: error records outside meisa (kind, top frames, count):')
        for (k, top), n in others.most_common(30):
            print('  %5d  %s | %s' % (n, k, top))
    sys.exit(1 if mine else 0)


if __name__ == '__main__':
    main()
