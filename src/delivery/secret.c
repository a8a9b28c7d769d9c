/*
 * secret.c
 *		The two secrets of delivery, read from files: the key that signs
 *		unsubscribe tokens (meisa.secret_file) and the SMTP password
 *		(meisa.smtp_password_file).  No setting holds a secret, because a
 *		setting's value can be read by every role in a session where meisa
 *		is not loaded yet (without shared_preload_libraries, e.g. pg_cron
 *		calling meisa_deliver()): PostgreSQL keeps it as a placeholder, which
 *		SHOW and current_setting() show to anyone.  The settings name files
 *		that the server's operating-system user reads, refused when others
 *		could read them (the rule PostgreSQL applies to ssl_key_file).  The
 *		backend that needs a secret reads its file on first use and keeps it
 *		until the path changes or the configuration is reloaded.  The former
 *		inline settings meisa.secret and meisa.smtp_password stay defined
 *		only to refuse any value.
 */
#include "delivery/delivery.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* Longest secret accepted, in bytes (a trailing newline not counted). */
#define SECRET_MAX		4096
/* Most bytes read from a secret file: the secret and a CRLF, and one more. */
#define SECRET_READ_MAX (SECRET_MAX + 3)

/* What reading a secret file found. */
typedef enum SecretFileStatus
{
	SF_OK,
	SF_OPEN,					/* open() failed: errno */
	SF_STAT,					/* fstat() failed: errno */
	SF_NOT_REGULAR,
	SF_OWNER,					/* owned by neither the server's user nor root */
	SF_MODE,					/* group or world access */
	SF_READ,					/* read() failed: errno */
	SF_TOO_LARGE,
	SF_EMPTY,
	SF_ZERO_BYTE
} SecretFileStatus;

/* One secret read from a file named by a setting, and what is cached of it. */
typedef struct FileSecret
{
	const char *setting;		/* name of the path setting */
	char	  **path;			/* its variable */
	char	   *value;			/* the secret (TopMemoryContext), NULL = none */
	size_t		len;
	char	   *cached_path;	/* path 'value' was read from; NULL = nothing read */
	TimestampTz cached_at;		/* PgReloadTime when it was read */
	char	   *reported_path;	/* last unusable path reported by a _ready() check */
	TimestampTz reported_at;
} FileSecret;

static char *secret_file = NULL;
static char *smtp_password_file = NULL;
static char *inline_secret = NULL;
static char *inline_smtp_password = NULL;

static FileSecret token_key = {.setting = "meisa.secret_file", .path = &secret_file};
static FileSecret smtp_password = {.setting = "meisa.smtp_password_file", .path = &smtp_password_file};

/* Refuses any value of an inline secret setting ('name'); 'file_setting' replaces it. */
static bool
refuse_inline_secret(const char *value, const char *name, const char *file_setting,
					 const char *what)
{
	if (value == NULL || value[0] == '\0')
		return true;
	/* the value itself is never repeated: the message goes to the server log */
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("%s is refused: meisa reads the %s from the file named by %s",
					 name, what, file_setting);
	GUC_check_errdetail("A setting's value is readable by every role in a session where meisa is not loaded yet, "
						"so %s no longer holds a secret and its value is ignored.", name);
	GUC_check_errhint("Write the %s to a file only the database server's operating-system user can read "
					  "(mode 0600), set %s to its path, and remove %s.", what, file_setting, name);
	return false;
}

/* Check hook of meisa.secret: only the empty value is accepted. */
static bool
check_inline_secret(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	return refuse_inline_secret(*newval, "meisa.secret", "meisa.secret_file",
								"key of unsubscribe tokens");
}

/* Check hook of meisa.smtp_password: only the empty value is accepted. */
static bool
check_inline_smtp_password(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	return refuse_inline_secret(*newval, "meisa.smtp_password", "meisa.smtp_password_file",
								"SMTP password");
}

/* Defines the secret file settings and the refused inline settings. */
void
secret_init(void)
{
	DefineCustomStringVariable("meisa.secret_file",
							   "File holding the key that signs unsubscribe tokens (HMAC-SHA256).",
							   "Relative paths are relative to the data directory. Empty: no token can be issued or verified and marketing mail is held.",
							   &secret_file, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("meisa.smtp_password_file",
							   "File holding the password for SMTP authentication.",
							   "Relative paths are relative to the data directory. Empty: an empty password.",
							   &smtp_password_file, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("meisa.secret",
							   "No longer used: any value is refused; set meisa.secret_file.",
							   NULL, &inline_secret, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_inline_secret, NULL, NULL);
	DefineCustomStringVariable("meisa.smtp_password",
							   "No longer used: any value is refused; set meisa.smtp_password_file.",
							   NULL, &inline_smtp_password, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   check_inline_smtp_password, NULL, NULL);
}

/*
 * Reads a secret file into buf (SECRET_READ_MAX + 1 bytes) after the
 * checks PostgreSQL makes of ssl_key_file; *len is the secret's length
 * without one trailing newline, *err the errno of a failed call.  Raises no
 * error, so that the descriptor is always closed.
 */
static SecretFileStatus
secret_file_read(const char *path, char *buf, size_t *len, int *err)
{
	struct stat st;
	int			fd;
	size_t		n = 0;
	SecretFileStatus status = SF_OK;

	*len = 0;
	*err = 0;
	/* O_NONBLOCK: a FIFO must not hang the backend before fstat() refuses it */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | PG_BINARY, 0);
	if (fd < 0)
	{
		*err = errno;
		return SF_OPEN;
	}
	if (fstat(fd, &st) != 0)
	{
		*err = errno;
		status = SF_STAT;
	}
	else if (!S_ISREG(st.st_mode))
		status = SF_NOT_REGULAR;
	else if (st.st_uid != geteuid() && st.st_uid != 0)
		status = SF_OWNER;
	else if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
			 (st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
		status = SF_MODE;
	while (status == SF_OK)
	{
		ssize_t		got = read(fd, buf + n, SECRET_READ_MAX - n);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
		{
			*err = errno;
			status = SF_READ;
		}
		else if (got == 0)
			break;
		else if ((n += got) == SECRET_READ_MAX)
			status = SF_TOO_LARGE;
	}
	close(fd);
	if (status != SF_OK)
		return status;
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	if (n == 0)
		return SF_EMPTY;
	if (n > SECRET_MAX)
		return SF_TOO_LARGE;
	if (memchr(buf, '\0', n) != NULL)
		return SF_ZERO_BYTE;
	*len = n;
	return SF_OK;
}

/* Reports why the file of fs at 'path' cannot be used, at elevel. */
static void
secret_file_report(int elevel, const FileSecret *fs, const char *path,
				   SecretFileStatus status, int err)
{
	const char *hint = "Write the secret to a file owned by the database server's operating-system user, "
		"with mode 0600, and reload.";

	errno = err;
	switch (status)
	{
		case SF_OPEN:
		case SF_STAT:
		case SF_READ:
			ereport(elevel,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\" named by %s: %m", path, fs->setting),
					 errhint("%s", hint)));
			break;
		case SF_NOT_REGULAR:
			ereport(elevel,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("file \"%s\" named by %s is not a regular file", path, fs->setting),
					 errhint("%s", hint)));
			break;
		case SF_OWNER:
			ereport(elevel,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("file \"%s\" named by %s must be owned by the database user or root",
							path, fs->setting),
					 errhint("%s", hint)));
			break;
		case SF_MODE:
			ereport(elevel,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("file \"%s\" named by %s has group or world access", path, fs->setting),
					 errdetail("File must have permissions u=rw (0600) or less if owned by the database user, "
							   "or permissions u=rw,g=r (0640) or less if owned by root.")));
			break;
		case SF_TOO_LARGE:
			ereport(elevel,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("file \"%s\" named by %s holds more than %d bytes",
							path, fs->setting, SECRET_MAX),
					 errdetail("One trailing newline is not counted.")));
			break;
		case SF_EMPTY:
			ereport(elevel,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("file \"%s\" named by %s is empty", path, fs->setting),
					 errdetail("One trailing newline is not part of the secret.")));
			break;
		case SF_ZERO_BYTE:
			ereport(elevel,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("file \"%s\" named by %s contains a zero byte", path, fs->setting)));
			break;
		case SF_OK:
			break;
	}
}

/* Forgets the cached secret of fs, overwriting it first. */
static void
secret_forget(FileSecret *fs)
{
	if (fs->value)
	{
		explicit_bzero(fs->value, fs->len);
		pfree(fs->value);
	}
	if (fs->cached_path)
		pfree(fs->cached_path);
	fs->value = NULL;
	fs->len = 0;
	fs->cached_path = NULL;
}

/*
 * Makes fs->value the secret its setting names: from the cache while the
 * path is the same and no reload happened since it was read, else from the
 * file (NULL when the setting is empty).  When the file cannot be used,
 * reports why at elevel (an ERROR does not return; below ERROR, once per
 * path and reload) and returns false.
 */
static bool
secret_load(FileSecret *fs, int elevel)
{
	const char *path = *fs->path ? *fs->path : "";
	char		buf[SECRET_READ_MAX + 1];
	size_t		len;
	int			err;
	SecretFileStatus status;

	if (fs->cached_path && strcmp(fs->cached_path, path) == 0 &&
		fs->cached_at == PgReloadTime)
		return true;
	secret_forget(fs);
	if (path[0] != '\0')
	{
		status = secret_file_read(path, buf, &len, &err);
		if (status != SF_OK)
		{
			explicit_bzero(buf, sizeof(buf));
			if (elevel < ERROR && fs->reported_path &&
				strcmp(fs->reported_path, path) == 0 && fs->reported_at == PgReloadTime)
				return false;
			if (elevel < ERROR)
			{
				if (fs->reported_path)
					pfree(fs->reported_path);
				fs->reported_path = MemoryContextStrdup(TopMemoryContext, path);
				fs->reported_at = PgReloadTime;
			}
			secret_file_report(elevel, fs, path, status, err);
			return false;
		}
		fs->value = MemoryContextAlloc(TopMemoryContext, len + 1);
		memcpy(fs->value, buf, len + 1);
		fs->len = len;
		explicit_bzero(buf, sizeof(buf));
	}
	fs->cached_path = MemoryContextStrdup(TopMemoryContext, path);
	fs->cached_at = PgReloadTime;
	return true;
}

/* Level of a problem found by a _ready() check: LOG in the worker, else WARNING. */
static int
ready_elevel(void)
{
	return am_delivery_worker ? LOG : WARNING;
}

/* The key of unsubscribe tokens; NULL when meisa.secret_file is empty; ERROR when its file is unusable. */
const char *
secret_token_key(size_t *len)
{
	secret_load(&token_key, ERROR);
	*len = token_key.len;
	return token_key.value;
}

/* True when a key of unsubscribe tokens is usable; a file that is not is reported (LOG/WARNING). */
bool
secret_token_key_ready(void)
{
	return secret_load(&token_key, ready_elevel()) && token_key.value != NULL;
}

/* The SMTP password ("" when meisa.smtp_password_file is empty); ERROR when its file is unusable. */
const char *
secret_smtp_password(void)
{
	secret_load(&smtp_password, ERROR);
	return smtp_password.value ? smtp_password.value : "";
}

/* True unless meisa.smtp_password_file names an unusable file (reported at LOG/WARNING). */
bool
secret_smtp_password_ready(void)
{
	return secret_load(&smtp_password, ready_elevel());
}

/* Errors out (55000, naming meisa.secret_file) unless a key of unsubscribe tokens is set. */
void
secret_require_token_key(void)
{
	size_t		len;

	if (secret_token_key(&len) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("meisa.secret_file is not set"),
				 errdetail("Unsubscribe tokens are signed with the key in the file meisa.secret_file names."),
				 errhint("Write a long random key to a file only the database server's operating-system user can read "
						 "(mode 0600), set meisa.secret_file to its path and reload; meisa.secret is no longer read.")));
}
