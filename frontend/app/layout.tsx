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

// The user's choice when there is one, else the system's (prefers-color-scheme): set before the first paint
// so the page never flashes; while no choice is stored the page follows the system as it changes.
const THEME_SCRIPT = `try{var k="slm.theme",m=matchMedia("(prefers-color-scheme: dark)"),a=function(){var t=localStorage.getItem(k);document.documentElement.classList.toggle("dark",t?t==="dark":m.matches)};a();m.addEventListener("change",function(){if(!localStorage.getItem(k))a()})}catch(e){document.documentElement.classList.add("dark")}`;

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
