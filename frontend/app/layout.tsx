import type { Metadata, Viewport } from "next";

import "./globals.css";

export const metadata: Metadata = {
  title: "SLM chat",
  description: "Chat with a small language model trained from scratch",
};

export const viewport: Viewport = {
  width: "device-width",
  initialScale: 1,
  themeColor: "#18181b",
};

// Dark unless the user chose light: set before the first paint so the page never flashes.
const THEME_SCRIPT = `try{if(localStorage.getItem("slm.theme")!=="light")document.documentElement.classList.add("dark")}catch(e){document.documentElement.classList.add("dark")}`;

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en" suppressHydrationWarning>
      <head>
        <script dangerouslySetInnerHTML={{ __html: THEME_SCRIPT }} />
      </head>
      <body className="bg-white text-zinc-900 antialiased dark:bg-zinc-900 dark:text-zinc-100">{children}</body>
    </html>
  );
}
