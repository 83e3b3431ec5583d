-- leads_client_id_email_idx (sql/0012_leads.sql) served the duplicate lookup by email until contacts moved to
-- app.lead_contacts (sql/0013_lead_routing.sql); since then no statement reads it: duplicates are found
-- through lead_contacts, and staff search email through the full-text index. Every lead still paid an entry
-- in it. Measured with callgrind on app.ingest_requests (instruction counts, steady state): 480M against
-- 468M instructions a 500-lead call, 75.6M against 74.1M a call of 64 single-lead requests.
-- leads_client_id_phone_idx stays: the WhatsApp inbound lookup falls back to it when a contact's claim names a
-- deleted lead.
drop index public.leads_client_id_email_idx;
