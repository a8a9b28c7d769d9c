#!/usr/bin/env python3
"""test/docs/links.py [TOP]: every relative link of README.md and docs/*.md
resolves, and every file of the tree they name exists.

One check per markdown link [text](target) that is not a URL: the target
file (or folder) exists, relative to the file that links to it, and its
#anchor, if any, is the anchor of a heading of the target (GitHub's rule:
lower-case, punctuation dropped, spaces as hyphens, a repeated heading
gets -1, -2, ...).  One check per distinct path of the tree a file names
(sql/..., specs/..., t/..., test/..., bench/..., scripts/..., src/...,
debian/..., demo/..., docs/..., meisa--*.sql): it exists (sql/NAME also as
sql/NAME.sql).  Prints each failure and "N passed, M failed"; exits 1 on a
failure."""
import glob
import os
import re
import sys

top = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                      os.path.join(os.path.dirname(__file__), '..', '..'))
files = [os.path.join(top, 'README.md')] + sorted(glob.glob(os.path.join(top, 'docs', '*.md')))

LINK = re.compile(r'\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)')
PATH = re.compile(r'(?<![\w./<>$~-])((?:sql|expected|specs|t|test|bench|scripts|src|debian|demo|docs|\.ci)/'
                  r'[A-Za-z0-9_./-]*[A-Za-z0-9_]|meisa--[0-9.-]+\.sql)')
# paths of other projects that the docs name as such
FOREIGN = {'src/tools/valgrind.supp'}


def slug(heading):
    """The anchor GitHub gives a heading."""
    h = re.sub(r'`', '', heading.strip()).lower()
    h = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', h)
    h = re.sub(r'[^\w\- ]', '', h)
    return h.replace(' ', '-')


def anchors(path):
    """The anchors of the headings of a markdown file (outside code fences)."""
    seen, out, fence = {}, set(), False
    for line in open(path, encoding='utf-8'):
        if line.startswith('```'):
            fence = not fence
            continue
        m = None if fence else re.match(r'^#{1,6} +(.*?) *#* *$', line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else '%s-%d' % (s, n))
    return out


def prose(path):
    """The text of a markdown file without its code fences and inline code spans."""
    text, fence = [], False
    for line in open(path, encoding='utf-8'):
        if line.startswith('```'):
            fence = not fence
            continue
        if not fence:
            text.append(re.sub(r'``.*?``|`[^`]*`', '', line))
    return ''.join(text)


passed = failed = 0


def check(ok, message):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print('FAIL ' + message)


cache = {}
for f in files:
    rel = os.path.relpath(f, top)
    for target in LINK.findall(prose(f)):
        if re.match(r'^[a-z]+:', target):
            continue
        path, _, anchor = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
        if not os.path.exists(dest):
            check(False, '%s: link %s: no file %s' % (rel, target, os.path.relpath(dest, top)))
            continue
        if anchor and dest.endswith('.md'):
            if dest not in cache:
                cache[dest] = anchors(dest)
            check(anchor in cache[dest], '%s: link %s: no heading with anchor #%s in %s'
                  % (rel, target, anchor, os.path.relpath(dest, top)))
        else:
            check(True, '')
    named = sorted(set(PATH.findall(open(f, encoding='utf-8').read())))
    for p in named:
        if p in FOREIGN or re.search(r'NN|NAME', p):	# placeholders: sql/NN_name.sql
            continue
        full = os.path.join(top, p)
        ok = os.path.exists(full) or (p.startswith('sql/') and os.path.exists(full + '.sql'))
        check(ok, '%s: names %s, which does not exist' % (rel, p))
print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
