-- Private tables in the app schema: row-level security on, with no policies, so no API role could read a
-- row even if a grant were added by mistake. The platform reaches them only through security definer
-- functions owned by the table owner, which row-level security does not apply to.

alter table app.credentials enable row level security;
alter table app.invitations enable row level security;
alter table app.sessions enable row level security;
alter table app.refresh_tokens enable row level security;
alter table app.rate_limits enable row level security;
alter table app.role_templates enable row level security;
alter table app.membership_closure enable row level security;
alter table app.lead_viewers enable row level security;
alter table app.api_keys enable row level security;
alter table app.outbox enable row level security;
alter table app.jobs enable row level security;
alter table app.job_pauses enable row level security;
alter table app.webhook_secrets enable row level security;
alter table app.automation_catalog enable row level security;
alter table app.integration_secrets enable row level security;
alter table app.meta_page_tokens enable row level security;
alter table app.webhook_inbox enable row level security;
alter table app.retention_state enable row level security;
