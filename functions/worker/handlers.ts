/** Which handler runs each job kind; a worker claims only the kinds it has a handler for. */
import { checkCredentialHealth } from "./credential_health.ts";
import { backfillMetaForm } from "./meta_backfill.ts";
import { fetchMetaLead } from "./meta_leads.ts";
import { appendToSheet } from "./sheets_append.ts";
import { importFromSheet } from "./sheets_import.ts";
import { deliverWebhook } from "./webhook_delivery.ts";
import { receiveWhatsAppMessage, updateWhatsAppStatus } from "./whatsapp_inbound.ts";
import { sendWhatsAppGreeting } from "./whatsapp_greeting.ts";
import type { JobHandler } from "./worker.ts";

export function jobHandlers(): Record<string, JobHandler> {
  return {
    "webhook.deliver": deliverWebhook,
    "meta.fetch_lead": fetchMetaLead,
    "whatsapp.inbound": receiveWhatsAppMessage,
    "whatsapp.status": updateWhatsAppStatus,
    "whatsapp.greeting": sendWhatsAppGreeting,
    "sheets.append": appendToSheet,
    "sheets.import": importFromSheet,
    "integrations.health": checkCredentialHealth,
    "meta.backfill": backfillMetaForm,
  };
}
