// Kept out of docs.html so the page needs no inline script.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // No badge from validator.swagger.io: the page loads nothing from another origin.
  validatorUrl: null,
});
