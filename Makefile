# meisa: PGXS build. C sources by concern under src/ (and its folders),
# install and upgrade scripts meisa--*.sql, pg_regress tests in sql/ +
# expected/, isolation tests in specs/ + expected/.
#
# Builds in the source tree (make) or out of it, the way PGXS does VPATH
# builds and Debian's pg_buildext drives them:
#   mkdir build && make -C build -f $PWD/Makefile VPATH=$PWD
#
# Tests (meisa installed; as a user other than root):
#   make installcheck     pg_regress and isolation tests against a running
#                         server (PGHOST/PGPORT/PGUSER), as PostgreSQL's own
#                         modules do, then the TAP tests t/*.pl
#                         (PostgreSQL::Test::Cluster: servers of their own)
#   make check-temp       the same, pg_regress and isolation tests on a
#                         throwaway server that pg_regress starts itself
#                         (--temp-instance)
#   make prove-tap        the TAP tests alone (PROVE_TESTS=t/001_x.pl for
#                         one, PROVE_FLAGS=-v for each assertion);
#                         TAP_TESTS= on the command line leaves them out
#                         of installcheck and check-temp

EXTENSION   = meisa
MODULE_big  = meisa

# the source tree: the folder of this Makefile, wherever make runs
top        := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
ifneq ($(abspath .),$(top))
VPATH      ?= $(top)
endif

SRCS        = $(sort $(wildcard $(top)/src/*.c $(top)/src/*/*.c))
OBJS        = $(patsubst $(top)/%.c,%.o,$(SRCS))
DATA        = $(notdir $(sort $(wildcard $(top)/meisa--*.sql)))

REGRESS     = $(sort $(patsubst $(top)/sql/%.sql,%,$(wildcard $(top)/sql/*.sql)))
ISOLATION   = $(sort $(patsubst $(top)/specs/%.spec,%,$(wildcard $(top)/specs/*.spec)))
TAP_TESTS   = 1
ifdef TEMP_INSTANCE
REGRESS_OPTS   = --temp-instance=./tmp_check --temp-config=$(top)/test/regress.conf
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=$(top)/test/regress.conf
endif

PG_CPPFLAGS = -I$(top)/src -isystem $(includedir_server) $(shell curl-config --cflags 2>/dev/null)
PG_CFLAGS   = -Wall -Wextra -Werror
SHLIB_LINK  = $(shell curl-config --libs 2>/dev/null || echo -lcurl)
EXTRA_CLEAN = results regression.diffs regression.out tmp_check tmp_check_iso output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# out of tree, the object files' folders exist before the first compile
ifneq ($(abspath .),$(top))
$(shell mkdir -p $(sort $(dir $(OBJS))))
endif

# pg_regress and pg_isolation_regress on a temporary server of their own
.PHONY: check-temp
check-temp:
	$(MAKE) -f $(top)/Makefile installcheck TEMP_INSTANCE=1

# the TAP tests t/*.pl alone, as installcheck runs them (PGXS's
# prove_installcheck: the installed bindir's servers, in tmp_check/)
.PHONY: prove-tap
prove-tap:
	$(prove_installcheck)
