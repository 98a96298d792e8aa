import { defineConfig } from "vite";

// The service serves the build from api/static (api/console.py): `/` and `/assets/…`.
export default defineConfig({
  build: {
    outDir: "../api/static",
    emptyOutDir: true,
    // Everything is bundled: at run time the page loads nothing but this service.
    modulePreload: { polyfill: false },
  },
  server: {
    // `npx vite` for front-end work against a running `fencewatch serve`.
    proxy: { "/api": { target: "http://127.0.0.1:8080", ws: true } },
  },
});
