// Sign-up form: answers in the page, no request, no reload.
(() => {
  const form = document.getElementById("signup-form");
  const error = document.getElementById("form-error");
  const confirmation = document.getElementById("confirmation");
  const field = (id) => document.getElementById(id);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = field("name").value.trim();
    if (!name || !field("terms").checked) {
      error.hidden = false;
      return;
    }
    error.hidden = true;
    const plan = field("plan");
    field("confirmation-title").textContent = `Thanks, ${name}!`;
    field("confirmation-name").textContent = name;
    field("confirmation-email").textContent = field("email").value.trim() || "—";
    field("confirmation-plan").textContent = plan.options[plan.selectedIndex].text;
    field("confirmation-message").textContent = field("message").value.trim() || "—";
    form.hidden = true;
    confirmation.hidden = false;
  });

  field("edit").addEventListener("click", () => {
    confirmation.hidden = true;
    form.hidden = false;
  });
})();
