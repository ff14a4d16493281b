"use client";

import { useCallback, useEffect, useRef, useState } from "react";

import { ApiError } from "@/lib/api";
import { type Conversation, listConversations } from "@/lib/conversations";

/** The sidebar's list: newest first, one page at a time, filtered by a title search. */
export function useConversations() {
  const [query, setQuery] = useState("");
  const [items, setItems] = useState<Conversation[]>([]);
  const [total, setTotal] = useState(0);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const request = useRef<AbortController | null>(null);

  const load = useCallback(
    async (offset: number) => {
      request.current?.abort();
      const controller = new AbortController();
      request.current = controller;
      setLoading(true);
      setError(null);
      try {
        const page = await listConversations(offset, query, controller.signal);
        setTotal(page.total);
        setItems((old) => {
          if (offset === 0) return page.items;
          const seen = new Set(old.map((c) => c.id)); // a conversation may have moved up between pages
          return [...old, ...page.items.filter((c) => !seen.has(c.id))];
        });
      } catch (caught) {
        if (controller.signal.aborted) return;
        setError(caught instanceof ApiError ? caught.message : String(caught));
      }
      if (request.current === controller) {
        request.current = null;
        setLoading(false);
      }
    },
    [query],
  );

  useEffect(() => {
    // the first page of a fetch started here (its loading state is set at once)
    // eslint-disable-next-line react-hooks/set-state-in-effect
    load(0);
    return () => request.current?.abort();
  }, [load]);

  const loadMore = useCallback(() => {
    if (!request.current && items.length < total) load(items.length);
  }, [items.length, total, load]);

  return {
    query,
    setQuery,
    items,
    total,
    loading,
    error,
    loadMore,
    refresh: useCallback(() => load(0), [load]),
    /** A conversation just got a message: first in the list, without reloading the pages already seen. */
    bump: (id: number) =>
      setItems((old) => {
        const found = old.find((c) => c.id === id);
        return found ? [{ ...found, updated_at: new Date().toISOString() }, ...old.filter((c) => c.id !== id)] : old;
      }),
    replace: (conversation: Conversation) =>
      setItems((old) => old.map((c) => (c.id === conversation.id ? conversation : c))),
    remove: (id: number) => {
      setItems((old) => old.filter((c) => c.id !== id));
      setTotal((t) => Math.max(0, t - 1));
    },
  };
}

export type ConversationList = ReturnType<typeof useConversations>;
