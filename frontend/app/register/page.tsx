import AuthForm from "@/components/AuthForm";

export const metadata = { title: "Register · SLM" };

export default function RegisterPage() {
  return <AuthForm mode="register" />;
}
