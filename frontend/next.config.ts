import type { NextConfig } from "next";

// A static export: infra/router (local), nginx (EC2) or S3 + CloudFront serve frontend/out as plain files.
const nextConfig: NextConfig = {
  output: "export",
  images: { unoptimized: true },
  poweredByHeader: false,
  reactStrictMode: true,
};

export default nextConfig;
