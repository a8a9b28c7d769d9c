
-- ===== Delivery (DESIGN §5): SMTP delivery, MIME, unsubscribe tokens =====

-- API: Public (admin). Delivers one batch of due messages synchronously, in
-- the caller's transaction; returns how many were sent.  For servers without
-- the background worker (cron jobs, tests).
CREATE FUNCTION meisa_deliver("max" int DEFAULT 100) RETURNS int
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, meisa, pg_temp
    AS 'MODULE_PATHNAME', 'meisa_deliver';
COMMENT ON FUNCTION meisa_deliver(int) IS 'deliver up to max due messages now; returns the number sent';

-- API: Private (admin). The exact RFC 5322 bytes a message is sent as.
CREATE FUNCTION meisa.mime(message_id bigint) RETURNS text
    LANGUAGE C STABLE STRICT PARALLEL UNSAFE
    SECURITY DEFINER SET search_path = pg_catalog, meisa, pg_temp
    AS 'MODULE_PATHNAME', 'meisa_mime';
COMMENT ON FUNCTION meisa.mime(bigint) IS 'the message as sent: RFC 5322 headers and MIME body, CRLF line ends';

-- API: Public (app, admin). meisa.unsubscribe_base_url followed by a signed
-- token for the contact (the unsubscribe_url templates see).
CREATE FUNCTION meisa.unsubscribe_url(contact_id bigint) RETURNS text
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'meisa_unsubscribe_url_sql';
COMMENT ON FUNCTION meisa.unsubscribe_url(bigint) IS 'unsubscribe link of a contact: meisa.unsubscribe_base_url || signed token';

-- API: Private (admin). The contact a token names; error 22023 when invalid.
CREATE FUNCTION meisa.unsubscribe_token_contact(token text) RETURNS bigint
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'meisa_unsubscribe_token_contact_sql';
COMMENT ON FUNCTION meisa.unsubscribe_token_contact(text) IS 'verifies an unsubscribe token; returns the contact id';

-- Private: rejects CR/LF in header values of any queued message, whatever
-- path wrote it, and wakes the delivery worker when a queued row commits.
CREATE FUNCTION meisa.messages_check_write() RETURNS trigger
    LANGUAGE C
    AS 'MODULE_PATHNAME', 'meisa_messages_check_write';
CREATE TRIGGER messages_check_write
    BEFORE INSERT OR UPDATE OF subject, to_email, from_address, reply_to, message_id, status
    ON meisa.messages FOR EACH ROW EXECUTE FUNCTION meisa.messages_check_write();

GRANT EXECUTE ON FUNCTION meisa_deliver(int) TO meisa_admin;
GRANT EXECUTE ON FUNCTION meisa.mime(bigint) TO meisa_admin;
GRANT EXECUTE ON FUNCTION meisa.unsubscribe_url(bigint) TO meisa_app, meisa_admin;
GRANT EXECUTE ON FUNCTION meisa.unsubscribe_token_contact(text) TO meisa_admin;
