// The admin's page: send an announcement (everyone), an alert (roles) or a message
// (chosen users); create users with roles; assign employees to lots.
import { useState } from "preact/hooks";
import { del, get, getAll, post } from "./api.js";
import { useApp, useResync } from "./context.js";
import { html } from "./html.js";
import { ActionButton, Field, Loading, Trouble, formValues } from "./ui.js";

const ROLES = ["driver", "owner", "employee", "admin"];
const LEVELS = ["info", "success", "warning", "error"];
const PRIORITIES = ["normal", "low", "high", "urgent"];

function Send({ users }) {
  const { toast } = useApp();
  const [to, setTo] = useState("roles");
  const submit = async (event) => {
    event.preventDefault();
    const form = event.target;
    const v = formValues(form);
    const audience =
      to === "all"
        ? { all: true }
        : to === "roles"
          ? { roles: ROLES.filter((r) => form.elements[`role-${r}`].checked) }
          : { user_ids: [...form.elements.user_ids.selectedOptions].map((o) => o.value) };
    try {
      const result = await post("/admin/notifications", {
        audience,
        title: v.title,
        body: v.body,
        level: v.level,
        priority: v.priority,
      });
      const n = result.recipients;
      toast({ level: "success", title: `Sent to ${n} ${n === 1 ? "person" : "people"}`, type: "local" });
      form.reset();
    } catch (error) {
      toast({ level: "error", title: "Not sent", body: error.message });
    }
  };
  return html`<form class="card stack" onSubmit=${submit} aria-labelledby="send-title">
    <h2 id="send-title">Send a notification</h2>
    <fieldset class="row wrap">
      <legend>To</legend>
      ${[
        ["roles", "Roles (alert)"],
        ["all", "Everyone (announcement)"],
        ["users", "Chosen users (message)"],
      ].map(
        ([value, text]) => html`<label class="check">
          <input type="radio" name="to" value=${value} checked=${to === value} onChange=${() => setTo(value)} />
          ${text}
        </label>`,
      )}
    </fieldset>
    ${to === "roles" &&
    html`<fieldset class="row wrap">
      <legend>Roles</legend>
      ${ROLES.map(
        (r) => html`<label class="check"><input type="checkbox" name=${`role-${r}`} checked=${r === "driver"} /> ${r}</label>`,
      )}
    </fieldset>`}
    ${to === "users" &&
    html`<${Field} label="Users (hold Ctrl or Cmd to choose several)">
      <select name="user_ids" multiple size="5" required>
        ${users.map((u) => html`<option value=${u.id}>${u.full_name} · ${u.email}</option>`)}
      </select>
    </${Field}>`}
    <${Field} label="Title"><input name="title" required maxlength="200" /></${Field}>
    <${Field} label="Message"><textarea name="body" required maxlength="2000" rows="3"></textarea></${Field}>
    <div class="row wrap">
      <${Field} label="Level">
        <select name="level">${LEVELS.map((l) => html`<option value=${l}>${l}</option>`)}</select>
      </${Field}>
      <${Field} label="Priority">
        <select name="priority">${PRIORITIES.map((p) => html`<option value=${p}>${p}</option>`)}</select>
      </${Field}>
    </div>
    <button class="btn btn-primary" type="submit">Send</button>
  </form>`;
}

function NewUser({ created }) {
  const { toast } = useApp();
  const submit = async (event) => {
    event.preventDefault();
    const form = event.target;
    const v = formValues(form);
    try {
      const user = await post("/admin/users", {
        email: v.email,
        full_name: v.full_name,
        password: v.password,
        roles: ROLES.filter((r) => form.elements[`new-${r}`].checked),
      });
      toast({ level: "success", title: `${user.email} can log in now`, type: "local" });
      form.reset();
      created();
    } catch (error) {
      toast({ level: "error", title: "The user was not created", body: error.message });
    }
  };
  return html`<details class="card">
    <summary>Create a user</summary>
    <form class="grid-form" onSubmit=${submit}>
      <${Field} label="Full name"><input name="full_name" required maxlength="200" /></${Field}>
      <${Field} label="Email"><input name="email" type="email" required maxlength="254" /></${Field}>
      <${Field} label="Password"><input name="password" type="password" minlength="8" maxlength="256" required autocomplete="new-password" /></${Field}>
      <fieldset class="row wrap">
        <legend>Roles</legend>
        ${ROLES.map(
          (r) => html`<label class="check"><input type="checkbox" name=${`new-${r}`} checked=${r === "employee"} /> ${r}</label>`,
        )}
      </fieldset>
      <button class="btn btn-primary" type="submit">Create user</button>
    </form>
  </details>`;
}

function Staff({ lots, users }) {
  const [lotId, setLotId] = useState("");
  const [staff, setStaff] = useState(null);
  const [employee, setEmployee] = useState("");
  const employees = users.filter((u) => u.roles.includes("employee"));
  const names = Object.fromEntries(users.map((u) => [u.id, `${u.full_name} · ${u.email}`]));

  const loadStaff = async (id) => {
    setLotId(id);
    setStaff(null);
    if (id) setStaff((await get(`/lots/${id}/staff`)).items);
  };
  const assign = async () => {
    await post(`/lots/${lotId}/staff`, { user_id: employee });
    await loadStaff(lotId);
  };
  const unassign = async (userId) => {
    await del(`/lots/${lotId}/staff/${userId}`);
    await loadStaff(lotId);
  };
  return html`<section class="card stack" aria-labelledby="staff-title">
    <h2 id="staff-title">Assign staff</h2>
    <${Field} label="Lot">
      <select value=${lotId} onChange=${(e) => loadStaff(e.target.value)}>
        <option value="">Choose a lot</option>
        ${lots.map((l) => html`<option value=${l.id}>${l.name}</option>`)}
      </select>
    </${Field}>
    ${lotId && !staff && html`<${Loading} />`}
    ${staff &&
    html`<ul class="list" aria-label="Staff of this lot">
        ${staff.length === 0 && html`<li class="muted">Nobody is assigned yet.</li>`}
        ${staff.map(
          (s) => html`<li class="list-row" key=${s.user_id}>
            <span>${names[s.user_id] || s.user_id}</span>
            <${ActionButton} action=${() => unassign(s.user_id)}>Unassign</${ActionButton}>
          </li>`,
        )}
      </ul>
      <div class="row wrap end">
        <${Field} label="Employee">
          <select value=${employee} onChange=${(e) => setEmployee(e.target.value)}>
            <option value="">Choose an employee</option>
            ${employees.map((u) => html`<option value=${u.id}>${u.full_name} · ${u.email}</option>`)}
          </select>
        </${Field}>
        <${ActionButton} kind="primary" action=${assign} disabled=${!employee}>Assign</${ActionButton}>
      </div>
      ${employees.length === 0 &&
      html`<p class="muted small">No user has the employee role yet: create one above.</p>`}`}
  </section>`;
}

export function AdminPage() {
  const [lots, setLots] = useState([]);
  const [users, setUsers] = useState([]);
  const [error, setError] = useState(null);
  const load = async () => {
    try {
      const [l, u] = await Promise.all([getAll("/lots"), getAll("/admin/users")]);
      setLots(l);
      setUsers(u);
      setError(null);
    } catch (e) {
      setError(e);
    }
  };
  useResync(load, []);
  return html`<section class="page">
    <h1>Admin</h1>
    <${Trouble} error=${error} retry=${load} stale=${users.length > 0} />
    <${Send} users=${users} />
    <${NewUser} created=${load} />
    <${Staff} lots=${lots} users=${users} />
  </section>`;
}
