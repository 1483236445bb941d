import { defineConfig } from 'vite'
import react from '@vitejs/plugin-react'

// `npm run dev` serves the demo with hot reload and forwards Tandem's routes to a server on
// 127.0.0.1:4455 (`cargo run -p tandem -- serve`). `npm run build` writes dist/, which the
// tandem binary embeds when it is built (crates/tandem/build.rs).
const tandem = process.env.TANDEM_URL ?? 'http://127.0.0.1:4455'

export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
  server: {
    proxy: {
      '/ws': { target: tandem, ws: true },
      '/docs': tandem,
      '/status': tandem
    }
  }
})
