"use client";

import Link from "next/link";
import { useEffect, useRef, useState } from "react";

import type { Conversation } from "@/lib/conversations";

import AccountPanel from "./AccountPanel";
import { CloseIcon, PencilIcon, PlusIcon, TrashIcon } from "./icons";
import type { ConversationList } from "./useConversations";
import { useDialog } from "./useDialog";

interface Props {
  list: ConversationList; // the conversations, the search, paging
  activeId: number | null;
  actions: {
    select: (id: number) => void;
    create: () => void;
    rename: (id: number, title: string) => Promise<void>;
    remove: (id: number) => Promise<void>;
  };
  drawer: { open: boolean; close: () => void }; // on a phone the sidebar is a drawer
  account: { email: string; logout: () => void };
}

const iconButton = "rounded p-1 text-zinc-500 dark:text-zinc-400 hover:bg-zinc-300 hover:text-zinc-900 dark:hover:bg-zinc-700 dark:hover:text-zinc-100";

export default function Sidebar(props: Props) {
  const { list, activeId, actions, account } = props;
  const { items, total, loading, error, setQuery: onQuery, loadMore: onLoadMore } = list;
  const { open, close } = props.drawer;
  const drawer = useRef<HTMLElement>(null);
  const [search, setSearch] = useState(list.query);
  const [editing, setEditing] = useState<number | null>(null);
  const [confirming, setConfirming] = useState<Conversation | null>(null);
  const [accountOpen, setAccountOpen] = useState(false);
  const scroller = useRef<HTMLDivElement>(null);
  const sentinel = useRef<HTMLDivElement>(null);

  const narrow = useNarrow();

  useEffect(() => {
    const timer = setTimeout(() => onQuery(search), 250);
    return () => clearTimeout(timer);
  }, [search, onQuery]);

  useEffect(() => {
    // paging on scroll: the next page loads when the end of the list comes into view
    const target = sentinel.current;
    if (!target) return;
    const observer = new IntersectionObserver((entries) => entries[0].isIntersecting && onLoadMore(), {
      root: scroller.current,
      rootMargin: "200px",
    });
    observer.observe(target);
    return () => observer.disconnect();
  }, [onLoadMore, items.length]);

  return (
    <>
      {open && <div className="fixed inset-0 z-20 bg-black/50 md:hidden" onClick={close} aria-hidden="true" />}
      {/* the open drawer is a modal dialog: the focus moves in, Tab stays inside, Escape closes it */}
      {narrow && open && <DrawerKeys drawer={drawer} onClose={close} />}
      <aside
        ref={drawer}
        aria-label="Conversations"
        inert={narrow && !open} // a closed drawer takes no focus
        className={`fixed inset-y-0 left-0 z-30 flex w-72 flex-col border-r border-zinc-200 bg-zinc-100 transition-transform dark:border-zinc-800 dark:bg-zinc-950 md:static md:translate-x-0 ${
          open ? "translate-x-0" : "-translate-x-full"
        }`}
      >
        <div className="flex items-center gap-2 p-3">
          <button
            type="button"
            onClick={actions.create}
            className="flex flex-1 items-center gap-2 rounded-lg border border-zinc-300 px-3 py-2 text-sm font-medium hover:bg-zinc-200 dark:border-zinc-700 dark:hover:bg-zinc-800"
          >
            <PlusIcon /> New chat
          </button>
          <button type="button" onClick={close} className={`${iconButton} md:hidden`} aria-label="Close sidebar">
            <CloseIcon />
          </button>
        </div>
        <div className="px-3 pb-2">
          <input
            type="search"
            value={search}
            onChange={(e) => setSearch(e.target.value)}
            placeholder="Search titles"
            aria-label="Search conversations"
            className="w-full rounded-lg border border-zinc-300 bg-white px-3 py-1.5 text-sm outline-none focus:border-sky-500 dark:border-zinc-700 dark:bg-zinc-900"
          />
        </div>
        <div ref={scroller} className="flex-1 overflow-y-auto px-2">
          <ul className="space-y-0.5">
            {items.map((c) => (
              <li key={c.id} data-testid="conversation-item">
                {editing === c.id ? (
                  <RenameInput
                    title={c.title}
                    onDone={async (title) => {
                      if (title !== null && title !== c.title) await actions.rename(c.id, title); // failures: a banner
                      setEditing(null);
                    }}
                  />
                ) : (
                  <div
                    className={`group flex items-center rounded-lg text-sm ${
                      c.id === activeId ? "bg-zinc-300 dark:bg-zinc-800" : "hover:bg-zinc-200 dark:hover:bg-zinc-900"
                    }`}
                  >
                    <button
                      type="button"
                      onClick={() => actions.select(c.id)}
                      onDoubleClick={() => setEditing(c.id)}
                      className="min-w-0 flex-1 truncate px-3 py-2 text-left"
                      aria-current={c.id === activeId ? "page" : undefined}
                      title={c.title}
                    >
                      {c.title}
                    </button>
                    <span className="flex shrink-0 gap-0.5 pr-1 md:opacity-0 md:group-focus-within:opacity-100 md:group-hover:opacity-100">
                      <button type="button" className={iconButton} aria-label={`Rename ${c.title}`} onClick={() => setEditing(c.id)}>
                        <PencilIcon width={15} height={15} />
                      </button>
                      <button type="button" className={iconButton} aria-label={`Delete ${c.title}`} onClick={() => setConfirming(c)}>
                        <TrashIcon width={15} height={15} />
                      </button>
                    </span>
                  </div>
                )}
              </li>
            ))}
          </ul>
          <div ref={sentinel} className="h-4" />
          <p className="px-3 pb-3 text-xs text-zinc-500 dark:text-zinc-400" aria-live="polite">
            {error ? (
              <span role="alert" className="text-red-600 dark:text-red-400">
                {error}
              </span>
            ) : loading ? (
              "Loading…"
            ) : items.length === 0 ? (
              list.query ? "No conversation matches." : "No conversations yet."
            ) : items.length < total ? (
              `${items.length} of ${total}`
            ) : null}
          </p>
        </div>
        {/* the address on a line of its own: beside the three buttons it showed as "bo…" */}
        <div className="space-y-1 border-t border-zinc-200 p-3 text-sm dark:border-zinc-800">
          <p className="truncate px-2 text-zinc-500 dark:text-zinc-400" title={account.email}>
            {account.email}
          </p>
          <div className="flex items-center gap-1">
          <button type="button" onClick={() => setAccountOpen(true)} className="rounded px-2 py-1 hover:bg-zinc-200 dark:hover:bg-zinc-800">
            Account
          </button>
          <Link href="/model" className="rounded px-2 py-1 hover:bg-zinc-200 dark:hover:bg-zinc-800">
            Model
          </Link>
          <button type="button" onClick={account.logout} className="rounded px-2 py-1 hover:bg-zinc-200 dark:hover:bg-zinc-800">
            Log out
          </button>
          </div>
        </div>
      </aside>
      {accountOpen && <AccountPanel email={account.email} onClose={() => setAccountOpen(false)} />}
      {confirming && (
        <ConfirmDelete
          conversation={confirming}
          onCancel={() => setConfirming(null)}
          onConfirm={async () => {
            await actions.remove(confirming.id);
            setConfirming(null);
          }}
        />
      )}
    </>
  );
}

/** Below Tailwind's md breakpoint the sidebar is a drawer. */
function useNarrow(): boolean {
  const [narrow, setNarrow] = useState(false);
  useEffect(() => {
    const query = window.matchMedia("(max-width: 767.98px)");
    const update = () => setNarrow(query.matches);
    update();
    query.addEventListener("change", update);
    return () => query.removeEventListener("change", update);
  }, []);
  return narrow;
}

function RenameInput({ title, onDone }: { title: string; onDone: (title: string | null) => void }) {
  const [value, setValue] = useState(title);
  const finished = useRef(false); // Enter, Escape and the blur that follows end the edit once
  const finish = (result: string | null) => {
    if (finished.current) return;
    finished.current = true;
    onDone(result);
  };
  return (
    <form
      onSubmit={(e) => {
        e.preventDefault();
        finish(value.trim() || null);
      }}
    >
      <input
        autoFocus
        value={value}
        maxLength={200}
        aria-label="Conversation title"
        onChange={(e) => setValue(e.target.value)}
        onFocus={(e) => e.target.select()}
        onBlur={() => finish(value.trim() || null)}
        onKeyDown={(e) => {
          if (e.key !== "Escape") return;
          e.preventDefault(); // handled: it ends the rename, not the drawer around it (useDialog leaves it)
          finish(null);
        }}
        className="w-full rounded-lg border border-sky-500 bg-white px-3 py-1.5 text-sm outline-none dark:bg-zinc-900"
      />
    </form>
  );
}

function ConfirmDelete(props: { conversation: Conversation; onCancel: () => void; onConfirm: () => Promise<void> }) {
  const [busy, setBusy] = useState(false);
  const box = useRef<HTMLDivElement>(null);
  useDialog(box, props.onCancel);
  return (
    <div className="fixed inset-0 z-50 flex items-center justify-center bg-black/50 p-4" onClick={props.onCancel}>
      <div
        role="dialog"
        aria-modal="true"
        aria-labelledby="delete-title"
        ref={box}
        onClick={(e) => e.stopPropagation()}
        className="w-full max-w-sm space-y-4 rounded-xl bg-white p-5 shadow-xl dark:bg-zinc-800"
      >
        <h2 id="delete-title" className="font-semibold">
          Delete this conversation?
        </h2>
        <p className="text-sm text-zinc-600 dark:text-zinc-300">
          “{props.conversation.title}” and all its messages will be deleted for good.
        </p>
        <div className="flex justify-end gap-2">
          <button type="button" autoFocus onClick={props.onCancel} className="rounded-lg px-3 py-1.5 text-sm hover:bg-zinc-200 dark:hover:bg-zinc-700">
            Cancel
          </button>
          <button
            type="button"
            disabled={busy}
            onClick={async () => {
              setBusy(true);
              await props.onConfirm();
            }}
            className="rounded-lg bg-red-600 px-3 py-1.5 text-sm font-medium text-white hover:bg-red-500 disabled:opacity-60"
          >
            Delete
          </button>
        </div>
      </div>
    </div>
  );
}

/** The phone's open drawer as a modal dialog's keyboard (useDialog); nothing on a wide screen. */
function DrawerKeys({ drawer, onClose }: { drawer: React.RefObject<HTMLElement | null>; onClose: () => void }) {
  useDialog(drawer, onClose);
  return null;
}
