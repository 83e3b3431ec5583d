/**
 * Interactive API docs: Swagger UI (loaded from a pinned CDN build) over the OpenAPI documents of the
 * api and auth functions. Relative URLs keep it working under /functions/v1 locally and on Supabase.
 * Subresource integrity pins the CDN's files to the bytes of the npm package (the browser refuses anything
 * else), so the CDN cannot change the script that runs beside a user's pasted token.
 */
export const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Lead Automation Platform API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14/swagger-ui.css"
    integrity="sha384-wxLW6kwyHktdDGr6Pv1zgm/VGJh99lfUbzSn6HNHBENZlCN7W602k9VkGdxuFvPn" crossorigin="anonymous">
</head>
<body>
  <noscript>Lead Automation Platform API docs need JavaScript; the raw document is at openapi.json.</noscript>
  <div id="swagger-ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14/swagger-ui-bundle.js"
    integrity="sha384-wmyclcVGX/WhUkdkATwhaK1X1JtiNrr2EoYJ+diV3vj4v6OC5yCeSu+yW13SYJep" crossorigin="anonymous"></script>
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
