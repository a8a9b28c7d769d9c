-- Contacts, activity, events and subscriptions: the application API
-- (meisa_upsert, meisa_track, tags, unsubscribes, bounces, complaints),
-- the change-set function meisa.jsonb_diff, the triggers that see every
-- write of meisa.contacts and the view meisa.unsubscribed_emails.

-- API: Private. Flattened change set between two JSON objects.
CREATE FUNCTION meisa.jsonb_diff(old jsonb, new jsonb) RETURNS jsonb
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'meisa_jsonb_diff';
COMMENT ON FUNCTION meisa.jsonb_diff(jsonb, jsonb) IS
    'flattened change set {"path": {"old": v, "new": v}} between two JSON objects';

-- API: Private. Normalisation helpers used by the API functions below.
CREATE FUNCTION meisa.normalize_email(email text) RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'meisa_normalize_email';
CREATE FUNCTION meisa.normalize_tag(tag text) RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE     -- depends on meisa.max_tag_length
    AS 'MODULE_PATHNAME', 'meisa_normalize_tag';

-- API: Private. The contact as template/condition data (contact_data_jsonb).
CREATE FUNCTION meisa.contact_data(contact_id bigint) RETURNS jsonb
    LANGUAGE c STABLE STRICT
    AS 'MODULE_PATHNAME', 'meisa_contact_data';

-- Triggers: normalise every write, then record and fire its change set.
CREATE FUNCTION meisa.contacts_before() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'meisa_contacts_before';
CREATE FUNCTION meisa.contacts_after() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'meisa_contacts_after';
CREATE TRIGGER contacts_normalize BEFORE INSERT OR UPDATE ON meisa.contacts
    FOR EACH ROW EXECUTE FUNCTION meisa.contacts_before();
CREATE TRIGGER contacts_changes AFTER INSERT OR UPDATE ON meisa.contacts
    FOR EACH ROW EXECUTE FUNCTION meisa.contacts_after();
-- meisa.activity has no foreign key (see 10_tables.sql): it goes with its contact here.
CREATE FUNCTION meisa.contacts_deleted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
BEGIN
    DELETE FROM meisa.activity a WHERE a.contact_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER contacts_deleted AFTER DELETE ON meisa.contacts
    FOR EACH ROW EXECUTE FUNCTION meisa.contacts_deleted();

-- API: Public. Create or update a contact.
CREATE FUNCTION meisa_upsert(payload jsonb) RETURNS jsonb
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS 'MODULE_PATHNAME', 'meisa_upsert';

-- API: Public. Record a custom event; returns the event id.
CREATE FUNCTION meisa_track(event_name text, payload jsonb) RETURNS bigint
    LANGUAGE c VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS 'MODULE_PATHNAME', 'meisa_track';

-- API: Private. The id of the contact with this email; ERROR P0002 when none.
CREATE FUNCTION meisa.contact_id_by_email(email text) RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    norm text := meisa.normalize_email($1);
    cid bigint;
BEGIN
    SELECT c.id INTO cid FROM meisa.contacts c WHERE c.email = norm;
    IF cid IS NULL THEN
        RAISE EXCEPTION 'no contact has email "%"', norm
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN cid;
END
$$;

-- API: Public. Add a tag; true when the contact did not have it yet.
CREATE FUNCTION meisa_add_tag(email text, tag text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    t text := meisa.normalize_tag($2);
    cid bigint := meisa.contact_id_by_email($1);
BEGIN
    UPDATE meisa.contacts c SET tags = pg_catalog.array_append(c.tags, t)
     WHERE c.id = cid AND NOT (t = ANY (c.tags));
    RETURN FOUND;
END
$$;

-- API: Public. Remove a tag; true when the contact had it.
CREATE FUNCTION meisa_remove_tag(email text, tag text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    t text := meisa.normalize_tag($2);
    cid bigint := meisa.contact_id_by_email($1);
BEGIN
    UPDATE meisa.contacts c SET tags = pg_catalog.array_remove(c.tags, t)
     WHERE c.id = cid AND t = ANY (c.tags);
    RETURN FOUND;
END
$$;

-- API: Public. Unsubscribe from marketing mail by email or by the token of
-- an unsubscribe link (an argument without "@"); true when this changed the
-- contact.
CREATE FUNCTION meisa_unsubscribe(email_or_token text, reason text DEFAULT 'unsubscribed')
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    cid bigint;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'field "email_or_token" must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NULL OR $2 NOT IN ('unsubscribed', 'bounced', 'complained') THEN
        RAISE EXCEPTION 'invalid value for field "reason": %', coalesce(pg_catalog.quote_literal($2), 'null')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The reason is one of unsubscribed, bounced, complained.';
    END IF;
    IF pg_catalog.strpos($1, '@') > 0 THEN
        cid := meisa.contact_id_by_email($1);
    ELSE
        cid := meisa.unsubscribe_token_contact($1);   -- 60_delivery.sql
    END IF;
    UPDATE meisa.contacts c
       SET subscribed = false, unsubscribe_reason = $2, unsubscribed_at = pg_catalog.now()
     WHERE c.id = cid AND (c.subscribed OR c.unsubscribe_reason IS DISTINCT FROM $2);
    IF FOUND THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM meisa.contacts c WHERE c.id = cid) THEN
        RAISE EXCEPTION 'no contact has id %', cid USING ERRCODE = 'no_data_found';
    END IF;
    RETURN false;
END
$$;

-- API: Public. Subscribe again, clearing unsubscribe, bounce and complaint;
-- true when this changed the contact.
CREATE FUNCTION meisa_resubscribe(email text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    cid bigint := meisa.contact_id_by_email($1);
BEGIN
    UPDATE meisa.contacts c
       SET subscribed = true, unsubscribe_reason = NULL, unsubscribed_at = pg_catalog.now(),
           bounced_at = NULL, complained_at = NULL
     WHERE c.id = cid
       AND (NOT c.subscribed OR c.bounced_at IS NOT NULL OR c.complained_at IS NOT NULL);
    RETURN FOUND;
END
$$;

-- API: Public. A bounce reported by the sending provider: kind 'hard'
-- suppresses every mail to the address, 'soft' is only recorded; true when
-- this changed the contact.
CREATE FUNCTION meisa_record_bounce(email text, kind text, detail text DEFAULT NULL)
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    k text := pg_catalog.lower($2);
    cid bigint;
BEGIN
    IF k IS NULL OR k NOT IN ('hard', 'soft') THEN
        RAISE EXCEPTION 'invalid value for field "kind": %', coalesce(pg_catalog.quote_literal($2), 'null')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The kind of a bounce is hard or soft.';
    END IF;
    cid := meisa.contact_id_by_email($1);
    INSERT INTO meisa.activity (contact_id, kind, detail)
    VALUES (cid, 'bounce', pg_catalog.jsonb_build_object('kind', k, 'detail', $3));
    IF k = 'soft' THEN
        RETURN false;
    END IF;
    UPDATE meisa.contacts c
       SET bounced_at = pg_catalog.now(), subscribed = false, unsubscribe_reason = 'bounced',
           unsubscribed_at = pg_catalog.now()
     WHERE c.id = cid AND c.bounced_at IS NULL;
    RETURN FOUND;
END
$$;

-- API: Public. A spam complaint reported by the sending provider: suppresses
-- every mail to the address; true when this changed the contact.
CREATE FUNCTION meisa_record_complaint(email text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    cid bigint := meisa.contact_id_by_email($1);
BEGIN
    UPDATE meisa.contacts c
       SET complained_at = pg_catalog.now(), subscribed = false, unsubscribe_reason = 'complained',
           unsubscribed_at = pg_catalog.now()
     WHERE c.id = cid AND c.complained_at IS NULL;
    RETURN FOUND;
END
$$;

-- API: Public (app, reader). Addresses that must not get marketing mail,
-- polled by the application with WHERE changed_at > $last_poll.
CREATE VIEW meisa.unsubscribed_emails AS
SELECT c.email,
       c.external_id,
       CASE WHEN c.complained_at IS NOT NULL THEN 'complained'
            WHEN c.bounced_at IS NOT NULL THEN 'bounced'
            ELSE coalesce(c.unsubscribe_reason, 'unsubscribed') END AS reason,
       GREATEST(c.unsubscribed_at, c.bounced_at, c.complained_at) AS changed_at
  FROM meisa.contacts c
 WHERE NOT c.subscribed OR c.bounced_at IS NOT NULL OR c.complained_at IS NOT NULL;

-- Privileges of this part (90_privileges.sql revokes everything from PUBLIC).
GRANT EXECUTE ON FUNCTION meisa_upsert(jsonb), meisa_track(text, jsonb),
      meisa_add_tag(text, text), meisa_remove_tag(text, text),
      meisa_unsubscribe(text, text), meisa_resubscribe(text),
      meisa_record_bounce(text, text, text), meisa_record_complaint(text)
      TO meisa_app;
GRANT EXECUTE ON FUNCTION meisa.jsonb_diff(jsonb, jsonb) TO meisa_app, meisa_admin, meisa_reader;
GRANT EXECUTE ON FUNCTION meisa.contact_data(bigint) TO meisa_admin;
GRANT SELECT ON meisa.unsubscribed_emails TO meisa_app, meisa_reader;
