/**
 * Interactive API docs: Swagger UI (loaded from a pinned CDN build) over the OpenAPI documents of the
 * api and auth functions. Relative URLs keep it working under /functions/v1 locally and on Supabase.
 */
export const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Lead Automation Platform API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14/swagger-ui.css">
</head>
<body>
  <noscript>Lead Automation Platform API docs need JavaScript; the raw document is at openapi.json.</noscript>
  <div id="swagger-ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14/swagger-ui-bundle.js" crossorigin></script>
  <script>
    window.ui = SwaggerUIBundle({
      urls: [
        { url: "openapi.json", name: "api: clients, users, roles, products, leads, keys" },
        { url: "../auth/openapi.json", name: "auth: login and tokens" },
        { url: "../ingest/openapi.json", name: "ingest: leads from forms and servers" },
      ],
      dom_id: "#swagger-ui",
      persistAuthorization: true,
    });
  </script>
</body>
</html>`;
