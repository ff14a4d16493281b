import ModelCard from "@/components/ModelCard";

export const metadata = { title: "Model · SLM" };

export default function ModelPage() {
  return <ModelCard />;
}
